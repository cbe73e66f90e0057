// Package metrics exposes herald's Prometheus metrics. Each server owns its
// own registry, so several servers can run in one process (tests do).
package metrics

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldhq/herald/internal/group"
	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/source"
)

// Metrics holds the server's collectors.
type Metrics struct {
	reg *prometheus.Registry

	connections   *prometheus.GaugeVec
	subscriptions prometheus.Gauge
	published     prometheus.Counter
	delivered     prometheus.Counter
	slow          prometheus.Counter
	disconnects   *prometheus.CounterVec
	publishTime   prometheus.Histogram
	refusals      *prometheus.CounterVec
	proxyRejected *prometheus.CounterVec // by listener and reason

	sourcePolls     *prometheus.CounterVec // by source and result
	sourcePublished *prometheus.CounterVec // by source
	sourceErrors    *prometheus.CounterVec // by source and error kind

	groupDelivered    *prometheus.CounterVec // by group
	groupRedelivered  *prometheus.CounterVec // by group
	groupAcks         *prometheus.CounterVec // by group
	groupDeadLettered *prometheus.CounterVec // by group and reason

	webhooks webhookMetrics // webhooks.go
}

// Limits are the names of the limits counted by
// herald_limit_refusals_total, the last segment of their configuration
// keys; each is exported from zero.
var Limits = []string{
	"max_connections", "max_connections_per_ip", "new_connections_per_ip",
	"max_subscriptions_per_connection", "topics_per_request", "max_event_bytes",
	"publish_rate_per_key", "publish_rate_per_user", "publish_rate_per_ip", "publish_rate_per_connection",
	"publish_burst_per_key", "publish_burst_per_user", "publish_burst_per_ip", "publish_burst_per_connection",
}

// New registers herald's metrics, plus the Go runtime and process
// collectors, in a new registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_connections", Help: "Open push connections, by transport.",
		}, []string{"transport"}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_subscriptions", Help: "Active topic subscriptions (push subscribers and waiting long polls).",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_events_published_total", Help: "Events stored by the engine.",
		}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_events_delivered_total", Help: "Events queued to push subscribers (SSE, WebSocket, gRPC), live or recovered from history.",
		}),
		slow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_slow_consumer_disconnects_total", Help: "Push subscribers ended because their queue overflowed.",
		}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_disconnects_total", Help: "Push subscribers ended, by reason.",
		}, []string{"reason"}),
		publishTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "herald_publish_duration_seconds",
			Help:    "Time for the engine to store a publish (one event or a batch for one topic).",
			Buckets: []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05, .1, .5, 1},
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_limit_refusals_total",
			Help: "Connections and requests refused by a limit, by the limit's name (its configuration key's last segment).",
		}, []string{"limit"}),
		proxyRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_proxy_protocol_rejected_total",
			Help: "Connections from proxy_protocol.trusted peers closed for their PROXY protocol header, by listener (http, grpc) and reason (timeout, malformed, closed, busy).",
		}, []string{"listener", "reason"}),
		sourcePolls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_source_polls_total",
			Help: "Polls of source pollers, by source and result (changed, unchanged, not_modified, error).",
		}, []string{"source", "result"}),
		sourcePublished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_source_events_published_total", Help: "Events published by source pollers, by source.",
		}, []string{"source"}),
		sourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_source_errors_total",
			Help: "Failed polls of source pollers, by source and kind (request, refused, status, rate_limited, too_large, parse, publish, state).",
		}, []string{"source", "kind"}),
		groupDelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_delivered_total", Help: "Events leased to consumer group members, by group (redeliveries included).",
		}, []string{"group"}),
		groupRedelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_redelivered_total", Help: "Events leased again after a lease ran out or a nak, by group.",
		}, []string{"group"}),
		groupAcks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_acks_total", Help: "Deliveries acked by consumer group members, by group.",
		}, []string{"group"}),
		groupDeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_group_dead_lettered_total", Help: "Events sent to a group's dead-letter topic, by group and reason (max_deliveries, term).",
		}, []string{"group", "reason"}),
	}
	for _, l := range Limits {
		m.refusals.WithLabelValues(l)
	}
	m.reg.MustRegister(m.connections, m.subscriptions, m.published, m.delivered, m.slow,
		m.disconnects, m.publishTime, m.refusals, m.proxyRejected, m.sourcePolls, m.sourcePublished, m.sourceErrors,
		m.groupDelivered, m.groupRedelivered, m.groupAcks, m.groupDeadLettered,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.webhooks = newWebhookMetrics()
	m.reg.MustRegister(m.webhooks.collectors()...)
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// HubObserver returns the hub's counters wired to m.
func (m *Metrics) HubObserver() hub.Observer {
	reasons := map[hub.CloseReason]prometheus.Counter{}
	for _, r := range []hub.CloseReason{hub.CloseClient, hub.CloseSlow, hub.CloseShutdown, hub.CloseError, hub.CloseUnavailable} {
		reasons[r] = m.disconnects.WithLabelValues(r.String())
	}
	return hub.Observer{
		Published:     func(n int) { m.published.Add(float64(n)) },
		Delivered:     func(n int) { m.delivered.Add(float64(n)) },
		PublishTime:   func(d time.Duration) { m.publishTime.Observe(d.Seconds()) },
		SlowConsumers: func() { m.slow.Inc() },
		Subscriptions: func(d int) { m.subscriptions.Add(float64(d)) },
		Refused:       m.Refused,
		Disconnects: func(r hub.CloseReason) {
			if c, ok := reasons[r]; ok {
				c.Inc()
			}
		},
	}
}

// Refused counts a refusal by the limit whose configuration key is key
// (limits.max_connections, namespaces.chat.max_event_bytes): the label is
// the key's last segment.
func (m *Metrics) Refused(key string) {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		key = key[i+1:]
	}
	m.refusals.WithLabelValues(key).Inc()
}

// ProxyRejected returns the counter of a listener's connections closed for
// their PROXY protocol header, by reason; the reasons given are exported
// from zero.
func (m *Metrics) ProxyRejected(listener string, reasons ...string) func(reason string) {
	for _, r := range reasons {
		m.proxyRejected.WithLabelValues(listener, r)
	}
	return func(reason string) { m.proxyRejected.WithLabelValues(listener, reason).Inc() }
}

// Connections returns the gauge of open connections of one transport.
func (m *Metrics) Connections(transport string) prometheus.Gauge {
	return m.connections.WithLabelValues(transport)
}

// SourceObserver returns the source pollers' counters wired to m. A
// deleted source's series are removed.
func (m *Metrics) SourceObserver() source.Observer {
	return source.Observer{
		Polled: func(name string, r source.Result, kind string) {
			m.sourcePolls.WithLabelValues(name, string(r)).Inc()
			if kind != "" {
				m.sourceErrors.WithLabelValues(name, kind).Inc()
			}
		},
		Published: func(name string, n int) { m.sourcePublished.WithLabelValues(name).Add(float64(n)) },
		Removed: func(name string) {
			for _, v := range []*prometheus.CounterVec{m.sourcePolls, m.sourcePublished, m.sourceErrors} {
				v.DeletePartialMatch(prometheus.Labels{"source": name})
			}
		},
	}
}

// GroupObserver returns the consumer groups' counters wired to m. A
// deleted group's series are removed.
func (m *Metrics) GroupObserver() group.Observer {
	return group.Observer{
		Delivered: func(name string, n, redelivered int) {
			m.groupDelivered.WithLabelValues(name).Add(float64(n))
			if redelivered > 0 {
				m.groupRedelivered.WithLabelValues(name).Add(float64(redelivered))
			}
		},
		Acked:        func(name string, n int) { m.groupAcks.WithLabelValues(name).Add(float64(n)) },
		DeadLettered: func(name, reason string) { m.groupDeadLettered.WithLabelValues(name, reason).Inc() },
		Removed: func(name string) {
			for _, v := range []*prometheus.CounterVec{m.groupDelivered, m.groupRedelivered, m.groupAcks, m.groupDeadLettered} {
				v.DeletePartialMatch(prometheus.Labels{"group": name})
			}
		},
	}
}

// WatchGroups exports the state of gs's groups, read at each scrape:
// herald_group_pending (events not yet delivered: the lag behind the
// topics' heads), herald_group_in_flight (leased now) and
// herald_group_waiting (taken back, to deliver again).
func (m *Metrics) WatchGroups(gs *group.Manager) {
	m.reg.MustRegister(&groupCollector{gs: gs})
}

var (
	groupPendingDesc  = prometheus.NewDesc("herald_group_pending", "Events of a consumer group's topics not yet delivered (its lag behind the topics' heads), by group.", []string{"group"}, nil)
	groupInFlightDesc = prometheus.NewDesc("herald_group_in_flight", "Deliveries of a consumer group leased to members now, by group.", []string{"group"}, nil)
	groupWaitingDesc  = prometheus.NewDesc("herald_group_waiting", "Events of a consumer group taken back (a lease ran out, a nak) and not yet delivered again, by group.", []string{"group"}, nil)
)

// groupCollector reads the groups' state at each scrape.
type groupCollector struct{ gs *group.Manager }

func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- groupPendingDesc
	ch <- groupInFlightDesc
	ch <- groupWaitingDesc
}

func (c *groupCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := c.gs.List(ctx)
	if err != nil {
		return
	}
	for _, in := range list {
		name := in.Config.Name
		ch <- prometheus.MustNewConstMetric(groupPendingDesc, prometheus.GaugeValue, float64(in.Pending), name)
		ch <- prometheus.MustNewConstMetric(groupInFlightDesc, prometheus.GaugeValue, float64(in.InFlight), name)
		ch <- prometheus.MustNewConstMetric(groupWaitingDesc, prometheus.GaugeValue, float64(in.Waiting), name)
	}
}

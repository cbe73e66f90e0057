package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldhq/herald/internal/webhook"
)

// webhookMetrics are the outbound webhooks' series, each by webhook.
type webhookMetrics struct {
	attempts  *prometheus.CounterVec   // by webhook and result
	delivered *prometheus.CounterVec   // events delivered
	failed    *prometheus.CounterVec   // events failed for good (dead-lettered)
	retrying  *prometheus.GaugeVec     // events waiting for a retry
	disabled  *prometheus.GaugeVec     // 1 when disabled (paused or automatically)
	latency   *prometheus.HistogramVec // of a request, answer's head and body included
}

func newWebhookMetrics() webhookMetrics {
	return webhookMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_webhook_attempts_total",
			Help: "Webhook requests, by webhook and result (success, status, timeout, refused, network).",
		}, []string{"webhook", "result"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_webhook_delivered_total", Help: "Events delivered by webhooks (a 2xx answer), by webhook.",
		}, []string{"webhook"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_webhook_failed_total",
			Help: "Events whose webhook retries were exhausted (sent to the dead-letter topic), by webhook.",
		}, []string{"webhook"}),
		retrying: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_webhook_retries_pending", Help: "Events waiting for a webhook retry, by webhook.",
		}, []string{"webhook"}),
		disabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_webhook_disabled",
			Help: "1 for a webhook that sends nothing: paused (enabled: false) or disabled automatically; by webhook.",
		}, []string{"webhook"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_webhook_request_seconds",
			Help:    "Duration of webhook requests, by webhook.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"webhook"}),
	}
}

func (w *webhookMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{w.attempts, w.delivered, w.failed, w.retrying, w.disabled, w.latency}
}

// WebhookObserver returns the webhook dispatchers' counters wired to m. A
// deleted webhook's series are removed.
func (m *Metrics) WebhookObserver() webhook.Observer {
	w := &m.webhooks
	return webhook.Observer{
		Attempted: func(name, result string, d time.Duration) {
			w.attempts.WithLabelValues(name, result).Inc()
			w.latency.WithLabelValues(name).Observe(d.Seconds())
		},
		Delivered:      func(name string) { w.delivered.WithLabelValues(name).Inc() },
		Failed:         func(name string) { w.failed.WithLabelValues(name).Inc() },
		RetriesPending: func(name string, n int) { w.retrying.WithLabelValues(name).Set(float64(n)) },
		Disabled: func(name string, disabled bool) {
			v := 0.0
			if disabled {
				v = 1
			}
			w.disabled.WithLabelValues(name).Set(v)
		},
		Removed: func(name string) {
			for _, c := range w.collectors() {
				c.(interface {
					DeletePartialMatch(prometheus.Labels) int
				}).DeletePartialMatch(prometheus.Labels{"webhook": name})
			}
		},
	}
}

package bench

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/heraldhq/herald/internal/bench/histogram"
)

// Latency summarizes a latency histogram, in milliseconds.
type Latency struct {
	Count uint64  `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// latencyOf summarizes h, whose values are nanoseconds.
func latencyOf(h *histogram.Histogram) Latency {
	ms := func(ns uint64) float64 { return float64(ns) / 1e6 }
	return Latency{
		Count: h.Count(),
		Min:   ms(h.Min()),
		Mean:  h.Mean() / 1e6,
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		P999:  ms(h.Quantile(0.999)),
		Max:   ms(h.Max()),
	}
}

// String is the one-line form used in summaries.
func (l Latency) String() string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s)",
		fmtMillis(l.P50), fmtMillis(l.P90), fmtMillis(l.P99), fmtMillis(l.P999), fmtMillis(l.Max), fmtMillis(l.Mean))
}

// ServerStats is what the load generator observed of the server process.
type ServerStats struct {
	PID               int     `json:"pid,omitempty"`
	CPUSeconds        float64 `json:"cpu_s"`
	CPUCores          float64 `json:"cpu_cores"`                     // CPU seconds per second of the window
	MicrosPerDelivery float64 `json:"cpu_us_per_delivery,omitempty"` // fanout
	MicrosPerEvent    float64 `json:"cpu_us_per_event,omitempty"`    // publish
	RSSBytes          uint64  `json:"rss_bytes,omitempty"`
}

// CPUStats is the load generator's own CPU use over the measured window.
type CPUStats struct {
	CPUSeconds        float64 `json:"cpu_s"`
	CPUCores          float64 `json:"cpu_cores"`
	MicrosPerDelivery float64 `json:"cpu_us_per_delivery,omitempty"` // fanout
	MicrosPerEvent    float64 `json:"cpu_us_per_event,omitempty"`    // publish
}

// perUnit says what CPU time is divided by.
type perUnit int

const (
	perDelivery perUnit = iota // an event reaching one subscriber
	perEvent                   // an event published
)

func cpuStats(used, window time.Duration, n uint64, unit perUnit) CPUStats {
	s := CPUStats{CPUSeconds: used.Seconds()}
	if window > 0 {
		s.CPUCores = used.Seconds() / window.Seconds()
	}
	if n > 0 {
		per := float64(used.Nanoseconds()) / 1e3 / float64(n)
		if unit == perEvent {
			s.MicrosPerEvent = per
		} else {
			s.MicrosPerDelivery = per
		}
	}
	return s
}

// fmtMillis formats a duration given in milliseconds with 2–3 significant
// digits.
func fmtMillis(ms float64) string {
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%.3gs", ms/1000)
	case ms >= 100:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 1:
		return fmt.Sprintf("%.3gms", ms)
	default:
		return fmt.Sprintf("%.0fµs", ms*1000)
	}
}

// fmtBytes formats a byte count in binary units.
func fmtBytes(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", b)
	}
}

// fmtCount formats a count or rate compactly (12.3k, 4.56M).
func fmtCount(n float64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.3gM", n/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.3gk", n/1e3)
	default:
		return fmt.Sprintf("%.0f", n)
	}
}

// summaryWriter writes aligned "label  text" lines.
type summaryWriter struct {
	w   io.Writer
	err error
}

func (s *summaryWriter) line(label, format string, args ...any) {
	if s.err != nil {
		return
	}
	_, s.err = fmt.Fprintf(s.w, "%-10s %s\n", label, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

package bench

import (
	"fmt"
	"io"
	"os"
	"time"
)

// IsTerminal reports whether f is a terminal (a character device), where a
// live progress line is welcome.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress rewrites one line on a terminal every period with what line
// returns. The goroutine it starts is owned by the progress value and ends
// in stop.
type progress struct {
	w    io.Writer
	done chan struct{}
	quit chan struct{}
}

// startProgress starts a progress line on w; a nil w shows nothing.
func startProgress(w io.Writer, period time.Duration, line func() string) *progress {
	p := &progress{w: w, done: make(chan struct{}), quit: make(chan struct{})}
	if w == nil {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				fmt.Fprint(w, "\r\x1b[K")
				return
			case <-t.C:
				fmt.Fprint(w, "\r"+line()+"\x1b[K")
			}
		}
	}()
	return p
}

// stop clears the line and waits for the goroutine to end. It may be called
// more than once.
func (p *progress) stop() {
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	<-p.done
}

package group

import (
	"fmt"
	"strings"

	"github.com/heraldhq/herald/internal/event"
)

// pattern selects topics with the syntax of auth grants (pattern,
// NATS subjects): "orders.eu" is that topic, "orders.*" one segment in
// place of *, "orders.>" one or more segments after "orders.", ">" every
// topic. It is parsed here rather than imported because package auth
// imports the configuration, which declares groups.
type pattern struct {
	s    string
	wild bool
}

func parsePattern(s string) (pattern, error) {
	if s == "" {
		return pattern{}, fmt.Errorf("empty pattern")
	}
	if len(s) > event.MaxTopicLen {
		return pattern{}, fmt.Errorf("pattern is %d bytes, the limit is %d", len(s), event.MaxTopicLen)
	}
	p := pattern{s: s}
	for rest := s; ; {
		seg, tail, more := strings.Cut(rest, ".")
		switch {
		case seg == "*":
			p.wild = true
		case seg == ">":
			if more {
				return pattern{}, fmt.Errorf("pattern %q: > stands for the rest of a topic and must be the last segment", s)
			}
			p.wild = true
		case strings.ContainsAny(seg, "*>"):
			return pattern{}, fmt.Errorf("pattern %q: * and > stand for whole segments (orders.*, not orders.eu-*)", s)
		case seg == "":
			return pattern{}, fmt.Errorf("pattern %q has an empty segment (leading, trailing or double dot)", s)
		default:
			if err := event.ValidateTopic(seg); err != nil {
				return pattern{}, fmt.Errorf("pattern %q: %w", s, err)
			}
		}
		if !more {
			return p, nil
		}
		rest = tail
	}
}

// match reports whether topic, a valid topic name, is one of p's.
func (p pattern) match(topic string) bool {
	if !p.wild {
		return topic == p.s
	}
	pat := p.s
	for {
		pseg, prest, pmore := strings.Cut(pat, ".")
		tseg, trest, tmore := strings.Cut(topic, ".")
		switch pseg {
		case ">":
			return tseg != ""
		case "*":
			if tseg == "" {
				return false
			}
		default:
			if pseg != tseg {
				return false
			}
		}
		if pmore != tmore {
			return false
		}
		if !pmore {
			return true
		}
		pat, topic = prest, trest
	}
}

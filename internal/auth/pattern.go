package auth

import (
	"fmt"
	"strings"

	"github.com/heraldhq/herald/internal/event"
)

// A Pattern selects topics, segment by segment (segments are separated by
// dots, as in topic names):
//
//	chat.room-1   exactly that topic
//	chat.*        one segment in place of *: chat.a, not chat, chat.a.b or chatx.a
//	chat.>        one or more segments after chat.: chat.a, chat.a.b, not chat
//	*.alerts      * may stand anywhere: ops.alerts, db.alerts
//	>             every topic
//
// * and > stand for whole segments only ("chat.room-*" is not a pattern),
// and > only last. Literal segments follow the topic rules (letters,
// digits, "_-:@="), and a pattern is at most event.MaxTopicLen bytes. This
// is NATS's subject syntax, which herald's dotted names share.
type Pattern struct {
	s    string
	kind patternKind
}

type patternKind uint8

const (
	patternExact    patternKind = iota // no wildcard: string equality
	patternAll                         // ">": every topic
	patternWildcard                    // segment by segment
)

// ParsePattern parses s, or says what is wrong with it.
func ParsePattern(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, fmt.Errorf("empty pattern")
	}
	if len(s) > event.MaxTopicLen {
		return Pattern{}, fmt.Errorf("pattern is %d bytes, the limit is %d", len(s), event.MaxTopicLen)
	}
	if s == ">" {
		return Pattern{s: s, kind: patternAll}, nil
	}
	wild := false
	for rest := s; ; {
		seg, tail, more := strings.Cut(rest, ".")
		switch {
		case seg == "*":
			wild = true
		case seg == ">":
			if more {
				return Pattern{}, fmt.Errorf("pattern %q: > stands for the rest of a topic and must be the last segment", s)
			}
			wild = true
		case strings.ContainsAny(seg, "*>"):
			return Pattern{}, fmt.Errorf("pattern %q: * and > stand for whole segments (chat.*, not chat.room-*)", s)
		case seg == "":
			return Pattern{}, fmt.Errorf("pattern %q has an empty segment (leading, trailing or double dot)", s)
		default:
			if err := event.ValidateTopic(seg); err != nil {
				return Pattern{}, fmt.Errorf("pattern %q: %w", s, err)
			}
		}
		if !more {
			break
		}
		rest = tail
	}
	if !wild {
		return Pattern{s: s, kind: patternExact}, nil
	}
	return Pattern{s: s, kind: patternWildcard}, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.s }

// Match reports whether topic is one of the pattern's topics. It does not
// validate topic: callers check names with event.ValidateTopic first (the
// Gate does), so that no name a topic cannot have is ever matched against
// a grant. It does not allocate.
func (p Pattern) Match(topic string) bool {
	switch p.kind {
	case patternExact:
		return topic == p.s
	case patternAll:
		return topic != ""
	}
	pat := p.s
	for {
		pseg, prest, pmore := strings.Cut(pat, ".")
		tseg, trest, tmore := strings.Cut(topic, ".")
		switch pseg {
		case ">":
			return tseg != "" // one or more segments remain
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
			return false // one has segments the other has not
		}
		if !pmore {
			return true
		}
		pat, topic = prest, trest
	}
}

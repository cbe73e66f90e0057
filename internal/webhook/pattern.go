package webhook

import (
	"fmt"
	"strings"

	"github.com/heraldhq/herald/internal/event"
)

// A subscription's topics are names or patterns as auth grants write them
// (docs/security.md): "*" stands for one segment, a final ">" for one or
// more. Package auth has the grants' parser, but it depends on the
// configuration, which depends on this package; the rules are small
// enough to state twice, and the group checks them again.

// checkPattern returns an error for t that is neither a topic name nor a
// pattern.
func checkPattern(t string) error {
	if !strings.ContainsAny(t, "*>") {
		return event.ValidateTopic(t)
	}
	segs := strings.Split(t, ".")
	for i, s := range segs {
		switch {
		case s == "*":
			segs[i] = "x"
		case s == ">" && i == len(segs)-1:
			segs[i] = "x"
		case strings.ContainsAny(s, "*>"):
			return fmt.Errorf("%q: * stands for a whole segment, and > for the last", t)
		}
	}
	return event.ValidateTopic(strings.Join(segs, "."))
}

// matchPattern reports whether topic is matched by pattern p, which
// checkPattern accepted.
func matchPattern(p, topic string) bool {
	for {
		ps, prest, pmore := strings.Cut(p, ".")
		ts, trest, tmore := strings.Cut(topic, ".")
		switch {
		case ps == ">":
			return true
		case ps != "*" && ps != ts:
			return false
		case !pmore || !tmore:
			return pmore == tmore
		}
		p, topic = prest, trest
	}
}

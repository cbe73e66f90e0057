package event

import (
	"errors"
	"fmt"
	"strings"
)

// MaxTopicLen is the longest topic name accepted, in bytes.
const MaxTopicLen = 200

// ErrBadTopic is wrapped by every topic validation error.
var ErrBadTopic = errors.New("invalid topic")

// ValidateTopic reports whether name is a valid topic name: 1 to 200 bytes
// of ASCII letters, digits and "_-:@=", in segments separated by single dots
// ("chat.room-42", "prices.BTC-USD"). The first segment is the namespace.
// Names are case-sensitive.
func ValidateTopic(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrBadTopic)
	}
	if len(name) > MaxTopicLen {
		return fmt.Errorf("%w: name is %d bytes, the limit is %d", ErrBadTopic, len(name), MaxTopicLen)
	}
	prevDot := true // a leading dot is an empty first segment
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			if prevDot {
				return fmt.Errorf("%w: %q has an empty segment (leading, trailing or double dot)", ErrBadTopic, name)
			}
			prevDot = true
			continue
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '_', c == '-', c == ':', c == '@', c == '=':
		default:
			return fmt.Errorf("%w: %q has character %q at byte %d; allowed are letters, digits, '.', '_', '-', ':', '@', '='",
				ErrBadTopic, safePrefix(name), rune(c), i)
		}
		prevDot = false
	}
	if prevDot {
		return fmt.Errorf("%w: %q ends with a dot", ErrBadTopic, name)
	}
	return nil
}

// Namespace returns the first dot-separated segment of a valid topic name.
func Namespace(topic string) string {
	if i := strings.IndexByte(topic, '.'); i >= 0 {
		return topic[:i]
	}
	return topic
}

// safePrefix keeps error messages short for very long names.
func safePrefix(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

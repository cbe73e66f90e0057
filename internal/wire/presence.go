package wire

import (
	"strconv"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// AppendMember appends a present client's fields, without braces:
// "client":"…","info":{…},"since":"…" (info omitted when the client gave
// none).
func AppendMember(b []byte, m *event.Member) []byte {
	b = append(b, `"client":`...)
	b = AppendString(b, m.Client)
	if len(m.Info) > 0 {
		b = append(b, `,"info":`...)
		b = append(b, m.Info...)
	}
	b = append(b, `,"since":"`...)
	b = AppendTime(b, m.Since)
	return append(b, '"')
}

// AppendPresenceChange appends a join or leave notice's JSON object:
// {"topic":"…","client":"…","info":{…},"since":"…"}.
func AppendPresenceChange(b []byte, pc *hub.PresenceChange) []byte {
	b = append(b, `{"topic":`...)
	b = AppendString(b, pc.Topic)
	b = append(b, ',')
	b = AppendMember(b, &pc.Member)
	return append(b, '}')
}

// AppendPresence appends a presence list's fields, without braces:
// "count":N,"members":[{…},…].
func AppendPresence(b []byte, p *event.Presence) []byte {
	b = append(b, `"count":`...)
	b = strconv.AppendInt(b, int64(p.Count), 10)
	b = append(b, `,"members":[`...)
	for i := range p.Members {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		b = AppendMember(b, &p.Members[i])
		b = append(b, '}')
	}
	return append(b, ']')
}

package redis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// The engine shares presence among the nodes (hub.PresenceStore), as
// Centrifugo does: per topic a hash of the present clients and a sorted set
// of their expiry times (scripts.go lists the keys), in the topic's slot.
// The node holding a client writes its join and leave, and re-stamps its
// members every PresenceTTL/3, so the members of a node that died without
// a word expire after PresenceTTL. Every run of presenceScript drops the
// topic's expired members and tells their leave, so each is told once, by
// whichever node notices first (the refresh of any node with members on
// the topic does, within PresenceTTL/3 of the expiry).
//
// A member's value in the hash is the id of its node (random, 16 hex
// digits, new at every start), ':', the time it joined (unix ms), ':', and
// its info. Joins and leaves travel over the topic's event channel, so only
// nodes watching the topic receive them, as
//
//	"~p", 'j' (join) or 'l' (leave), ':', client, ':', the member's value
//
// An event message starts with 16 hex digits (codec.go), never '~'. Client
// ids are the hub's (hex) and hold no ':'. A node ignores the messages
// about its own members: its hub told its subscribers already, and when
// another node finds one of them expired (this node lost Redis for longer
// than the TTL) it is still present here; the refresh puts it back and
// tells the other nodes its join again.

// presencePrefix starts every presence message on a topic's channel.
const presencePrefix = "~p"

// DefaultPresenceTTL is Options.PresenceTTL's default.
const DefaultPresenceTTL = 60 * time.Second

// Bounds of the presence writer.
const (
	presenceBatch     = 512              // script calls pipelined at once
	presenceCallLimit = 10 * time.Second // one pipelined batch of calls
	presenceCloseWait = 2 * time.Second  // Close waits this long for queued changes to be written
)

// presence is the engine's side of shared presence. The goroutine run by
// writePresence owns writing this node's changes, in order, and refreshing
// its members; one goroutine does both so that a refresh can never put
// back a member whose leave was written after the refresh read it.
type presence struct {
	node string        // static: this node's id in presence messages
	ttl  time.Duration // static
	tell func(*hub.PresenceChange)

	mu      sync.Mutex // guards the fields below
	queue   []*hub.PresenceChange
	queued  uint64        // changes ever queued
	written uint64        // of those, the changes written or given up
	flushed chan struct{} // closed, and replaced, whenever written grows
	stopped bool          // Close began: no more changes are queued

	wake   chan struct{} // capacity 1: the queue is not empty
	stop   chan struct{} // closed by Close: write what is queued, then return
	ctx    context.Context
	cancel context.CancelFunc // ends a write Close no longer waits for
	done   chan struct{}      // closed when writePresence returns

	// local is this node's members, topic -> client -> hash value, as
	// written. Owned by writePresence.
	local map[string]map[string]string
}

// startPresence sets up e's presence and starts its writer.
func (e *Engine) startPresence() {
	p := &e.pres
	p.node = fmt.Sprintf("%016x", rand.Uint64())
	p.ttl = e.opts.PresenceTTL
	p.tell = func(*hub.PresenceChange) {}
	p.flushed = make(chan struct{})
	p.wake = make(chan struct{}, 1)
	p.stop = make(chan struct{})
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.done = make(chan struct{})
	p.local = make(map[string]map[string]string)
	go e.writePresence()
}

// stopPresence writes the changes queued, waiting at most
// presenceCloseWait, and stops the writer. The members this node still has
// are not removed: they expire (a node closing its engine before its hub
// is taken for a dead one).
func (e *Engine) stopPresence() {
	p := &e.pres
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	close(p.stop)
	t := time.NewTimer(presenceCloseWait)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.cancel()
		<-p.done
	}
	p.cancel()
}

// AttachPresence sets the function told of other nodes' presence changes;
// see hub.PresenceStore.
func (e *Engine) AttachPresence(tell func(*hub.PresenceChange)) { e.pres.tell = tell }

// SharePresence queues a join or leave of this node for writing; see
// hub.PresenceStore.
func (e *Engine) SharePresence(pc *hub.PresenceChange) {
	p := &e.pres
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.queue = append(p.queue, pc)
	p.queued++
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// ListPresence returns topic's members on every node, once this node's
// changes queued before the call are written; see hub.PresenceStore.
func (e *Engine) ListPresence(ctx context.Context, topic string, max int) (event.Presence, error) {
	if err := e.pres.wait(ctx); err != nil {
		return event.Presence{}, fmt.Errorf("redis presence of %s: %w", topic, err)
	}
	list := int64(max) // members the script reads: max, or all
	if list < 0 {
		list = -1
	}
	out, err := presenceScript.Exec(ctx, e.client, e.presenceKeys(topic), append(e.presenceArgs(topic, "q"), itoa(list))).ToArray()
	if err != nil {
		return event.Presence{}, fmt.Errorf("redis presence of %s: %w", topic, classify(err))
	}
	if len(out)%2 != 1 {
		return event.Presence{}, fmt.Errorf("redis presence of %s: %w: %d values", topic, errCorrupt, len(out))
	}
	count, err := out[0].AsInt64()
	if err != nil {
		return event.Presence{}, fmt.Errorf("redis presence of %s: %w: count: %v", topic, errCorrupt, err)
	}
	members := make([]event.Member, 0, len(out)/2)
	for i := 1; i < len(out); i += 2 {
		client, err1 := out[i].ToString()
		v, err2 := out[i+1].ToString()
		if err1 != nil || err2 != nil {
			return event.Presence{}, fmt.Errorf("redis presence of %s: %w: member %d", topic, errCorrupt, i/2)
		}
		_, m, err := parseMember(client, v)
		if err != nil {
			return event.Presence{}, fmt.Errorf("redis presence of %s: %w", topic, err)
		}
		members = append(members, m)
	}
	return event.Presence{Count: int(count), Members: members}, nil
}

// wait returns once the changes queued before the call are written (or
// given up), when ctx ends, or when the engine closes.
func (p *presence) wait(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	target := p.queued
	for p.written < target {
		ch := p.flushed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			p.mu.Lock()
			return ctx.Err()
		case <-p.done:
			p.mu.Lock()
			return fmt.Errorf("%w: engine closed", hub.ErrUnavailable)
		}
		p.mu.Lock()
	}
	return nil
}

// writePresence is the presence writer (see presence): it writes queued
// changes as they come, refreshes this node's members every ttl/3, and
// returns after writing what is queued when Close stops it.
func (e *Engine) writePresence() {
	p := &e.pres
	defer close(p.done)
	tick := time.NewTicker(max(p.ttl/3, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.wake:
			e.flushPresence()
		case <-tick.C:
			e.refreshPresence()
		case <-p.stop:
			e.flushPresence()
			return
		}
	}
}

// flushPresence writes the queued changes, in order, pipelined; a topic's
// calls reach its Redis node in that order.
func (e *Engine) flushPresence() {
	p := &e.pres
	for {
		p.mu.Lock()
		n := min(len(p.queue), presenceBatch)
		batch := slices.Clone(p.queue[:n])
		p.queue = p.queue[n:]
		if len(p.queue) == 0 {
			p.queue = nil
		}
		p.mu.Unlock()
		if n == 0 {
			return
		}
		execs := make([]rueidis.LuaExec, len(batch))
		for i, pc := range batch {
			mode := "j"
			if pc.Leave {
				mode = "l"
			}
			v := memberValue(p.node, pc.Member)
			execs[i] = rueidis.LuaExec{Keys: e.presenceKeys(pc.Topic), Args: append(e.presenceArgs(pc.Topic, mode), pc.Member.Client, v)}
			e.remember(pc.Topic, pc.Member.Client, v, !pc.Leave)
		}
		e.execPresence("write presence changes", execs)
		p.mu.Lock()
		p.written += uint64(n)
		close(p.flushed)
		p.flushed = make(chan struct{})
		p.mu.Unlock()
	}
}

// remember records this node's member of topic (present) or its absence.
// Only writePresence calls it.
func (e *Engine) remember(topic, client, value string, present bool) {
	m := e.pres.local[topic]
	if !present {
		delete(m, client)
		if len(m) == 0 {
			delete(e.pres.local, topic)
		}
		return
	}
	if m == nil {
		m = make(map[string]string)
		e.pres.local[topic] = m
	}
	m[client] = value
}

// refreshPresence re-stamps this node's members, one script call per
// topic. A member found missing (expired while Redis was out of reach,
// or lost with Redis's data) is put back and its join told again.
func (e *Engine) refreshPresence() {
	execs := make([]rueidis.LuaExec, 0, len(e.pres.local))
	for topic, members := range e.pres.local {
		args := e.presenceArgs(topic, "r")
		for client, v := range members {
			args = append(args, client, v)
		}
		execs = append(execs, rueidis.LuaExec{Keys: e.presenceKeys(topic), Args: args})
	}
	for chunk := range slices.Chunk(execs, presenceBatch) {
		e.execPresence("refresh presence", chunk)
	}
}

// execPresence runs presenceScript calls, pipelined, logging failures: a
// join that failed is written by the next refresh, and a leave that failed
// expires.
func (e *Engine) execPresence(what string, execs []rueidis.LuaExec) {
	if len(execs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(e.pres.ctx, presenceCallLimit)
	defer cancel()
	var res []rueidis.RedisResult
	if len(execs) == 1 { // EVALSHA at once; ExecMulti loads the script on every node first
		res = []rueidis.RedisResult{presenceScript.Exec(ctx, e.client, execs[0].Keys, execs[0].Args)}
	} else {
		res = presenceScript.ExecMulti(ctx, e.client, execs...)
	}
	failed := 0
	var first error
	for _, r := range res {
		if err := r.Error(); err != nil {
			if failed == 0 {
				first = err
			}
			failed++
		}
	}
	if failed > 0 {
		e.opts.Log.Warn("redis: "+what+" failed", "calls", len(execs), "failed", failed, "err", classify(first))
	}
}

func (e *Engine) presenceKeys(topic string) []string {
	return []string{e.key(topic, "p"), e.key(topic, "pz"), e.key(topic, "ps")}
}

// presenceArgs returns presenceScript's first arguments.
func (e *Engine) presenceArgs(topic, mode string) []string {
	return []string{mode, itoa(e.pres.ttl.Milliseconds()), e.key(topic, "c"), e.pubCmd}
}

// memberValue is m's value in the presence hash: node, ':', since, ':',
// info.
func memberValue(node string, m event.Member) string {
	return node + ":" + strconv.FormatInt(m.Since, 10) + ":" + string(m.Info)
}

// parseMember reads a presence hash value of client, and returns the id
// of the member's node too.
func parseMember(client, v string) (string, event.Member, error) {
	node, rest, ok1 := strings.Cut(v, ":")
	since, info, ok2 := strings.Cut(rest, ":")
	ms, err := strconv.ParseInt(since, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return "", event.Member{}, fmt.Errorf("%w: presence of %q: %q", errCorrupt, client, v)
	}
	m := event.Member{Client: client, Since: ms}
	if info != "" {
		m.Info = []byte(info)
	}
	return node, m, nil
}

// decodePresence parses a presence message of topic (see the top of this
// file) and returns the id of the member's node too.
func decodePresence(topic, msg string) (string, *hub.PresenceChange, error) {
	rest, ok := strings.CutPrefix(msg, presencePrefix)
	if !ok || len(rest) < 2 || (rest[0] != 'j' && rest[0] != 'l') || rest[1] != ':' {
		return "", nil, fmt.Errorf("%w: presence message", errCorrupt)
	}
	leave := rest[0] == 'l'
	client, value, ok := strings.Cut(rest[2:], ":")
	if !ok || client == "" {
		return "", nil, fmt.Errorf("%w: presence message", errCorrupt)
	}
	node, m, err := parseMember(client, value)
	if err != nil {
		return "", nil, err
	}
	return node, &hub.PresenceChange{Topic: topic, Leave: leave, Member: m}, nil
}

// onPresence hands the hub a presence message from another node.
func (e *Engine) onPresence(topic, msg string) {
	node, pc, err := decodePresence(topic, msg)
	if err != nil {
		e.opts.Log.Warn("redis: undecodable presence message", "topic", topic, "err", err)
		return
	}
	if node == e.pres.node {
		return
	}
	e.pres.tell(pc)
}

// presenceScript is every presence call on one topic. By mode: j joins
// the members given and publishes their join, r re-stamps them and
// publishes the join of those that were missing, l removes them and
// publishes the leave of those that were there, q lists the members. Then
// (first for q) it drops the members whose expiry has passed and
// publishes their leave. The keys live as long as their newest expiry.
// Expiry times are Redis's (TIME), so the nodes' clocks do not matter.
// A list reads only the members it returns (the longest present, from
// ps), so listing a big room costs what the list holds, not the room; ps
// is filled from p once if it lacks members (written by a node from before
// ps).
//
// KEYS: p (client -> node:since:info), pz (client by expiry, unix ms), ps
// (client by since, unix ms).
// ARGV: 1 mode, 2 ttl (ms), 3 channel, 4 PUBLISH or SPUBLISH, then client
// and value per member; for q, 5 the most members to list (-1: all).
// Returns {} but for q: {count, client, value, client, value...}, the
// members longest present first (ties by client).
var presenceScript = rueidis.NewLuaScript(`
local p, pz, ps = KEYS[1], KEYS[2], KEYS[3]
local mode, ttl, ch, pub = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- since reads the join time (unix ms) of a member's value node:since:info.
local function since(v) return tonumber(string.match(v, '^[^:]*:(%-?%d+):')) or 0 end
if mode == 'j' or mode == 'r' then
  local exp = string.format('%d', now + ttl)
  for i = 5, #ARGV, 2 do
    local c, v = ARGV[i], ARGV[i + 1]
    local new = redis.call('HSET', p, c, v)
    redis.call('ZADD', pz, exp, c)
    redis.call('ZADD', ps, since(v), c)
    if mode == 'j' or new == 1 then redis.call(pub, ch, '~pj:' .. c .. ':' .. v) end
  end
  for _, k in ipairs({p, pz, ps}) do
    if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
  end
elseif mode == 'l' then
  for i = 5, #ARGV, 2 do
    local c = ARGV[i]
    local v = redis.call('HGET', p, c)
    if v then
      redis.call('HDEL', p, c)
      redis.call('ZREM', pz, c)
      redis.call('ZREM', ps, c)
      redis.call(pub, ch, '~pl:' .. c .. ':' .. v)
    end
  end
end
local gone = redis.call('ZRANGEBYSCORE', pz, '-inf', string.format('%d', now), 'LIMIT', 0, 1000)
if #gone > 0 then
  local vals = redis.call('HMGET', p, unpack(gone))
  for i, c in ipairs(gone) do
    if vals[i] then redis.call(pub, ch, '~pl:' .. c .. ':' .. vals[i]) end
  end
  redis.call('HDEL', p, unpack(gone))
  redis.call('ZREM', pz, unpack(gone))
  redis.call('ZREM', ps, unpack(gone))
end
if mode == 'q' then
  local out = {redis.call('HLEN', p)}
  if redis.call('ZCARD', ps) < out[1] then
    -- Members written before ps existed (an older node): indexed once.
    local all = redis.call('HGETALL', p)
    for i = 1, #all, 2 do
      redis.call('ZADD', ps, 'NX', since(all[i + 1]), all[i])
    end
    if redis.call('PTTL', ps) < redis.call('PTTL', p) then redis.call('PEXPIRE', ps, redis.call('PTTL', p)) end
  end
  local n = tonumber(ARGV[5])
  local cs = {}
  if n ~= 0 then cs = redis.call('ZRANGE', ps, 0, n < 0 and -1 or n - 1) end
  if #cs > 0 then
    local vals = redis.call('HMGET', p, unpack(cs))
    for i, c in ipairs(cs) do
      if vals[i] then
        out[#out + 1] = c
        out[#out + 1] = vals[i]
      end
    end
  end
  return out
end
return {}
`)

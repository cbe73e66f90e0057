// Package redis is herald's networked engine: the topics of every herald
// node that shares one Redis (standalone, Sentinel or Cluster) live there,
// so any node can serve any consumer with the same cursor.
//
// Each topic's history is a Redis Stream whose entry IDs are the offsets.
// One Lua script per publish batch assigns the next offsets, dedupes
// idempotency keys, appends, trims by the namespace's retention and
// publishes the new events on the topic's channel, so offsets stay dense
// under concurrent publishers on many nodes. A node subscribes only to the
// channels of topics it has local consumers of (Watch/Unwatch): sharded
// pub/sub (SSUBSCRIBE) on Redis 7 and Cluster, plain pub/sub before.
// Pub/sub is at-most-once: after a lost connection the node resubscribes and
// hands the hub the newest event, and the hub reads the hole from history.
//
// A topic's epoch is kept in Redis beside its offsets. History lost with
// a wiped Redis, or a failover to a replica that did not have it, comes
// back under a new epoch, so consumers are told (gap epoch_changed) instead
// of seeing offsets silently start again. See docs/redis.md.
//
// Presence is shared too (hub.PresenceStore, presence.go): each node
// writes its clients' joins and leaves to a hash and a sorted set of
// expiry times per topic, refreshes them, and tells the other nodes over
// the topic's channel; a dead node's clients expire.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/heraldhq/herald/internal/engine/topics"
	"github.com/heraldhq/herald/internal/event"
	"github.com/heraldhq/herald/internal/hub"
)

// Options configure an Engine. Zero fields take the defaults noted.
type Options struct {
	// URL locates Redis: redis://[user:password@]host:port[/db], rediss://
	// for TLS; more seed addresses of a Cluster as ?addr=host:port (repeated);
	// Sentinel with ?master_set=NAME, the addresses being the sentinels'.
	URL string
	// Prefix starts every key and channel name. Default "herald".
	Prefix string
	// Retention returns the history bounds of a topic. Default:
	// event.DefaultRetention.
	Retention func(topic string) event.Retention
	// DedupeWindow is how long an idempotency key is remembered.
	// Default: event.DefaultDedupeWindow.
	DedupeWindow time.Duration
	// MaxKeysPerTopic caps the remembered idempotency keys of one topic.
	// Default: event.DefaultMaxKeysPerTopic.
	MaxKeysPerTopic int
	// Now returns the current time; tests replace it. Default time.Now.
	Now func() time.Time
	// Log receives the engine's warnings (lost subscriptions). Default: none.
	Log *slog.Logger
	// PresenceTTL is how long a member of a topic's presence outlives the
	// last refresh by its node (every PresenceTTL/3): the members of a
	// node that dies without a word disappear that long after. Default
	// DefaultPresenceTTL (presence.go).
	PresenceTTL time.Duration
	// Client, when set, replaces the options parsed from URL (tests, and
	// callers that need rueidis options herald does not expose).
	Client *rueidis.ClientOption
}

// Engine keeps topics in Redis. Create it with New and stop it with Close.
type Engine struct {
	opts    Options        // static after New
	client  rueidis.Client // commands
	sub     rueidis.Client // subscriptions: a deliver callback may then use client
	sharded bool           // SSUBSCRIBE/SPUBLISH rather than SUBSCRIBE/PUBLISH
	pubCmd  string
	deliver func(*event.Event) // set once by Attach, before use

	epochKey, topicsKey string

	mu       sync.Mutex
	watches  map[string]*watch
	stopping map[string]*watch // unwatched, still unsubscribing
	closed   bool

	wg sync.WaitGroup // watch goroutines and catch-ups

	qmu    sync.Mutex              // guards queues
	queues map[string]*appendQueue // topics with a publish call in flight (coalesce.go)

	pres presence // shared presence (presence.go)
}

// New connects to Redis and returns a running engine.
func New(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Prefix == "" {
		opts.Prefix = "herald"
	}
	if opts.Retention == nil {
		opts.Retention = func(string) event.Retention { return event.DefaultRetention() }
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = event.DefaultDedupeWindow
	}
	if opts.MaxKeysPerTopic <= 0 {
		opts.MaxKeysPerTopic = event.DefaultMaxKeysPerTopic
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.PresenceTTL <= 0 {
		opts.PresenceTTL = DefaultPresenceTTL
	}
	var co rueidis.ClientOption
	if opts.Client != nil {
		co = *opts.Client
	} else {
		var err error
		if co, err = ParseURL(opts.URL); err != nil {
			return nil, err
		}
	}
	co.DisableCache = true // herald reads every key once per request; tracking only costs
	client, err := rueidis.NewClient(co)
	if err != nil {
		return nil, fmt.Errorf("redis connect: %w", err)
	}
	sub, err := rueidis.NewClient(co)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("redis connect: %w", err)
	}
	e := &Engine{
		opts:      opts,
		client:    client,
		sub:       sub,
		deliver:   func(*event.Event) {},
		epochKey:  "{" + opts.Prefix + "}:epoch",
		topicsKey: "{" + opts.Prefix + "}:topics",
		watches:   make(map[string]*watch),
		stopping:  make(map[string]*watch),
		queues:    make(map[string]*appendQueue),
	}
	major, err := e.serverMajor(ctx)
	if err != nil {
		client.Close()
		sub.Close()
		return nil, err
	}
	e.sharded = major >= 7 || client.Mode() == rueidis.ClientModeCluster
	e.pubCmd = "PUBLISH"
	if e.sharded {
		e.pubCmd = "SPUBLISH"
	}
	e.startPresence()
	return e, nil
}

// ParseURL turns a herald Redis URL into rueidis options, refusing what it
// cannot use with a clear error.
func ParseURL(u string) (rueidis.ClientOption, error) {
	if u == "" {
		return rueidis.ClientOption{}, fmt.Errorf("%w: redis URL is empty", hub.ErrBadInput)
	}
	co, err := rueidis.ParseURL(u)
	if err != nil {
		return co, fmt.Errorf("%w: redis URL: %w", hub.ErrBadInput, err)
	}
	return co, nil
}

// serverMajor returns the major version of the Redis server.
func (e *Engine) serverMajor(ctx context.Context) (int, error) {
	info, err := e.client.Do(ctx, e.client.B().Info().Section("server").Build()).ToString()
	if err != nil {
		return 0, fmt.Errorf("redis INFO: %w", classify(err))
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			major, _, _ := strings.Cut(v, ".")
			return strconv.Atoi(major)
		}
	}
	return 0, errors.New("redis INFO: no redis_version")
}

// Sharded reports whether the engine uses sharded pub/sub.
func (e *Engine) Sharded() bool { return e.sharded }

// Client returns the engine's Redis client (tests inspect Redis with it).
func (e *Engine) Client() rueidis.Client { return e.client }

// Close writes the presence changes queued, unsubscribes from every
// channel and disconnects. The engine must not be used after.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	for _, w := range e.watches {
		w.cancel()
	}
	e.mu.Unlock()
	e.stopPresence()
	e.wg.Wait()
	e.sub.Close()
	e.client.Close()
	return nil
}

// Attach sets the delivery callback; see hub.Engine.
func (e *Engine) Attach(deliver func(*event.Event)) { e.deliver = deliver }

func (e *Engine) key(topic, suffix string) string {
	return e.opts.Prefix + ":{" + topic + "}:" + suffix
}

// classify maps a Redis client error to the hub's errors: the server out
// of memory is storage full; a lost or refused connection, a loading,
// failing-over or read-only server is unavailable. Context errors pass
// through.
func classify(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if re, ok := rueidis.IsRedisErr(err); ok {
		msg := re.Error()
		switch {
		case strings.HasPrefix(msg, "OOM"):
			return fmt.Errorf("%w: redis: %w", hub.ErrStorageFull, err)
		case re.IsLoading(), re.IsClusterDown(), re.IsTryAgain(),
			strings.HasPrefix(msg, "MASTERDOWN"), strings.HasPrefix(msg, "READONLY"), strings.HasPrefix(msg, "NOREPLICAS"):
			return fmt.Errorf("%w: redis: %w", hub.ErrUnavailable, err)
		}
		return fmt.Errorf("redis: %w", err)
	}
	return fmt.Errorf("%w: redis: %w", hub.ErrUnavailable, err)
}

func epochString(ep event.Epoch) string { return ep.String() }

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// Append stores recs at the end of topic; see hub.Engine. Concurrent
// appends to one topic share script calls (coalesce.go).
func (e *Engine) Append(ctx context.Context, topic string, recs []event.Record) ([]event.Ack, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return []event.Ack{}, nil
	}
	return e.coalesce(ctx, topic, recs)
}

// append runs the publish script for recs: one call, or two when the topic
// must first be given its epoch.
func (e *Engine) append(ctx context.Context, topic string, recs []event.Record) ([]event.Ack, error) {
	now := e.opts.Now().UnixMilli()
	ret := e.opts.Retention(topic)
	keys := []string{e.key(topic, "m"), e.key(topic, "s"), e.key(topic, "k"), e.key(topic, "kt")}
	args := make([]string, 10, 10+3*len(recs))
	args[1] = itoa(now)
	args[2] = itoa(e.opts.DedupeWindow.Milliseconds())
	args[3] = strconv.Itoa(e.opts.MaxKeysPerTopic)
	args[4] = strconv.Itoa(ret.MaxEvents)
	args[5] = itoa(ret.MaxBytes)
	args[6] = itoa(ret.MaxAge.Milliseconds())
	args[7] = e.key(topic, "c")
	args[8] = e.pubCmd
	args[9] = strconv.Itoa(len(recs))
	var buf []byte
	for i := range recs {
		r := &recs[i]
		buf = encodeRecord(buf[:0], r)
		args = append(args, r.Key, strconv.Itoa(r.Size()), string(buf))
	}
	out, err := publishScript.Exec(ctx, e.client, keys, args).ToArray()
	if err != nil {
		return nil, fmt.Errorf("redis append to %s: %w", topic, classify(err))
	}
	if len(out) == 1 { // the topic does not exist: learn the epoch to create it with
		ep, err := e.topicEpoch(ctx, "create", topic)
		if err != nil {
			return nil, fmt.Errorf("redis append to %s: %w", topic, err)
		}
		args[0] = epochString(ep)
		if out, err = publishScript.Exec(ctx, e.client, keys, args).ToArray(); err != nil {
			return nil, fmt.Errorf("redis append to %s: %w", topic, classify(err))
		}
	}
	if len(out) != 2+2*len(recs) {
		return nil, fmt.Errorf("redis append to %s: the script answered %d values for %d records", topic, len(out), len(recs))
	}
	status, _ := out[0].AsInt64()
	es, _ := out[1].ToString()
	ep, err := event.ParseEpoch(es)
	if err != nil {
		return nil, fmt.Errorf("redis append to %s: epoch %q: %w", topic, es, err)
	}
	if status == 2 {
		// Created: record it, so that losing this history later is told
		// apart from a topic never published to. Failing here only means a
		// loss would be noticed one publish later; the events are stored.
		_ = e.markCreated(ctx, topic, ep)
	}
	acks := make([]event.Ack, len(recs))
	for i := range acks {
		off, _ := out[2+2*i].AsInt64()
		dup, _ := out[3+2*i].AsInt64()
		acks[i] = event.Ack{Position: event.Position{Epoch: ep, Offset: uint64(off)}, Duplicate: dup == 1}
	}
	return acks, nil
}

// topicEpoch runs epochScript in mode for a topic that has no keys.
func (e *Engine) topicEpoch(ctx context.Context, mode, topic string) (event.Epoch, error) {
	s, err := epochScript.Exec(ctx, e.client, []string{e.epochKey, e.topicsKey},
		[]string{mode, topic, topics.NewEpoch().String(), topics.NewEpoch().String(), ""}).ToString()
	if err != nil {
		return 0, classify(err)
	}
	return event.ParseEpoch(s)
}

func (e *Engine) markCreated(ctx context.Context, topic string, ep event.Epoch) error {
	return epochScript.Exec(context.WithoutCancel(ctx), e.client, []string{e.epochKey, e.topicsKey},
		[]string{"mark", topic, topics.NewEpoch().String(), "", ep.String()}).Error()
}

// readTimeout bounds one Read. rueidis sends a read again after a lost
// connection until the call's context ends, so without a bound a read
// during an outage would wait for Redis however long it stays down (and
// hold the writer that asked). Past it the read fails as unavailable and
// the caller decides: the hub retries a consumer's history read within
// its own bound (hub.Options.UnavailableWait).
const readTimeout = 5 * time.Second

// Read returns events after `after`; see hub.Engine.
func (e *Engine) Read(ctx context.Context, topic string, after uint64, limit int) (event.Batch, error) {
	if err := ctx.Err(); err != nil {
		return event.Batch{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	b, err := e.readOrEmpty(rctx, topic, after, limit)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return event.Batch{}, fmt.Errorf("%w: redis read %s: no answer within %v", hub.ErrUnavailable, topic, readTimeout)
	}
	return b, err
}

// readOrEmpty is Read without its time bound.
func (e *Engine) readOrEmpty(ctx context.Context, topic string, after uint64, limit int) (event.Batch, error) {
	b, ok, err := e.read(ctx, topic, after, limit)
	if err != nil || ok {
		return b, err
	}
	// Not created (or lost): empty, with the epoch it will have.
	ep, err := e.topicEpoch(ctx, "read", topic)
	if err != nil {
		return event.Batch{}, fmt.Errorf("redis read %s: %w", topic, err)
	}
	// Created meanwhile? Then its own state, not the guess.
	if b, ok, err = e.read(ctx, topic, after, limit); err != nil || ok {
		return b, err
	}
	return event.Batch{Info: event.TopicInfo{Name: topic, Epoch: ep, First: 1}}, nil
}

func (e *Engine) read(ctx context.Context, topic string, after uint64, limit int) (event.Batch, bool, error) {
	ret := e.opts.Retention(topic)
	if limit < 0 {
		limit = 0
	}
	out, err := readScript.Exec(ctx, e.client, []string{e.key(topic, "m"), e.key(topic, "s")}, []string{
		strconv.FormatUint(after, 10), strconv.Itoa(limit), itoa(e.opts.Now().UnixMilli()), itoa(ret.MaxAge.Milliseconds()),
	}).ToArray()
	if err != nil {
		return event.Batch{}, false, fmt.Errorf("redis read %s: %w", topic, classify(err))
	}
	if len(out) == 0 {
		return event.Batch{}, false, nil
	}
	info, err := parseInfo(topic, out[:4])
	if err != nil {
		return event.Batch{}, false, err
	}
	b := event.Batch{Info: info}
	if len(out) > 4 {
		entries, err := out[4].ToArray()
		if err != nil {
			return event.Batch{}, false, fmt.Errorf("redis read %s: %w", topic, err)
		}
		b.Events = make([]*event.Event, 0, len(entries))
		for _, en := range entries {
			ev, err := parseEntry(topic, info.Epoch, en)
			if err != nil {
				return event.Batch{}, false, fmt.Errorf("redis read %s: %w", topic, err)
			}
			b.Events = append(b.Events, ev)
		}
	}
	return b, true, nil
}

// parseInfo reads {epoch, last, first, bytes} as the scripts return them.
func parseInfo(topic string, vals []rueidis.RedisMessage) (event.TopicInfo, error) {
	es, err := vals[0].ToString()
	if err != nil {
		return event.TopicInfo{}, fmt.Errorf("redis topic %s: epoch: %w", topic, err)
	}
	ep, err := event.ParseEpoch(es)
	if err != nil {
		return event.TopicInfo{}, fmt.Errorf("redis topic %s: epoch %q: %w", topic, es, err)
	}
	n := [3]int64{}
	for i := range n {
		if n[i], err = intOf(vals[i+1]); err != nil {
			return event.TopicInfo{}, fmt.Errorf("redis topic %s: %w", topic, err)
		}
	}
	last, first, bytes := uint64(n[0]), uint64(n[1]), n[2]
	return event.TopicInfo{Name: topic, Epoch: ep, First: first, Last: last, Retained: int(last + 1 - first), Bytes: bytes}, nil
}

// intOf reads an integer that Redis returned as a number or a string.
func intOf(m rueidis.RedisMessage) (int64, error) {
	if v, err := m.AsInt64(); err == nil {
		return v, nil
	}
	s, err := m.ToString()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(s, 10, 64)
}

// parseEntry turns a stream entry [id, [t, ms, z, size, r, record]] into
// an event.
func parseEntry(topic string, ep event.Epoch, en rueidis.RedisMessage) (*event.Event, error) {
	parts, err := en.ToArray()
	if err != nil || len(parts) != 2 {
		return nil, fmt.Errorf("%w: stream entry", errCorrupt)
	}
	id, err := parts[0].ToString()
	if err != nil {
		return nil, err
	}
	offs, _, _ := strings.Cut(id, "-")
	off, err := strconv.ParseUint(offs, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: entry id %q", errCorrupt, id)
	}
	fields, err := parts[1].ToArray()
	if err != nil || len(fields) != 6 {
		return nil, fmt.Errorf("%w: entry %s fields", errCorrupt, id)
	}
	ms, err := intOf(fields[1])
	if err != nil {
		return nil, fmt.Errorf("%w: entry %s time", errCorrupt, id)
	}
	rs, err := fields[5].ToString()
	if err != nil {
		return nil, err
	}
	r, err := decodeRecord(rs)
	if err != nil {
		return nil, fmt.Errorf("entry %s: %w", id, err)
	}
	return &event.Event{Topic: topic, Offset: off, Epoch: ep, Time: ms, Record: r}, nil
}

// Info returns a topic's state; see hub.Engine.
func (e *Engine) Info(ctx context.Context, topic string) (event.TopicInfo, bool, error) {
	vals, err := e.client.Do(ctx, e.client.B().Hmget().Key(e.key(topic, "m")).Field("e", "s", "f", "b").Build()).ToArray()
	if err != nil {
		return event.TopicInfo{}, false, fmt.Errorf("redis info %s: %w", topic, classify(err))
	}
	if len(vals) != 4 || vals[0].IsNil() {
		return event.TopicInfo{}, false, nil
	}
	info, err := parseInfo(topic, vals)
	return info, err == nil, err
}

// Topics lists the existing topics, sorted by name; see hub.Engine. The
// list comes from the deployment's registry of topics, each checked
// against its own keys.
func (e *Engine) Topics(ctx context.Context) ([]event.TopicInfo, error) {
	var names []string
	cursor := uint64(0)
	for {
		entry, err := e.client.Do(ctx, e.client.B().Hscan().Key(e.topicsKey).Cursor(cursor).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return nil, fmt.Errorf("redis topics: %w", classify(err))
		}
		for i := 0; i+1 < len(entry.Elements); i += 2 {
			names = append(names, entry.Elements[i])
		}
		if cursor = entry.Cursor; cursor == 0 {
			break
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	out := make([]event.TopicInfo, 0, len(names))
	for chunk := range slices.Chunk(names, 512) {
		cmds := make(rueidis.Commands, len(chunk))
		for i, n := range chunk {
			cmds[i] = e.client.B().Hmget().Key(e.key(n, "m")).Field("e", "s", "f", "b").Build()
		}
		for i, res := range e.client.DoMulti(ctx, cmds...) {
			vals, err := res.ToArray()
			if err != nil {
				return nil, fmt.Errorf("redis topics: %w", classify(err))
			}
			if len(vals) != 4 || vals[0].IsNil() {
				continue
			}
			info, err := parseInfo(chunk[i], vals)
			if err != nil {
				return nil, err
			}
			out = append(out, info)
		}
	}
	return out, nil
}

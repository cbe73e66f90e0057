package limit_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"github.com/heraldhq/herald/internal/hub"
	"github.com/heraldhq/herald/internal/limit"
)

// BenchmarkPublishAllow is the publish rate check on every publish: one
// user's bucket, taken and refilled. It must not allocate.
func BenchmarkPublishAllow(b *testing.B) {
	p := limit.NewPublish(limit.PublishOptions{
		PerUser:       limit.RatesOptions{Rate: 1e12, Burst: 1 << 30},
		PerConnection: limit.RatesOptions{Rate: 1e12, Burst: 1 << 30},
	})
	ctx := hub.WithOrigin(hub.WithIdentity(context.Background(),
		&hub.Identity{Method: "jwt", Subject: "alice", Transport: "ws", RemoteAddr: "192.0.2.1:40000"}), hub.OriginClient)
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Allow(ctx, "chat.a", 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishAllowAnonymous is the check of an anonymous caller: its
// address parsed and looked up.
func BenchmarkPublishAllowAnonymous(b *testing.B) {
	p := limit.NewPublish(limit.PublishOptions{PerIP: limit.RatesOptions{Rate: 1e12, Burst: 1 << 30}})
	ctx := hub.WithIdentity(context.Background(), &hub.Identity{Method: "anonymous", RemoteAddr: "192.0.2.1:40000"})
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Allow(ctx, "chat.a", 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishAllowParallel is the check with many users publishing
// at once, over the shards.
func BenchmarkPublishAllowParallel(b *testing.B) {
	p := limit.NewPublish(limit.PublishOptions{PerUser: limit.RatesOptions{Rate: 1e12, Burst: 1 << 30}})
	ctxs := make([]context.Context, 1024)
	for i := range ctxs {
		ctxs[i] = hub.WithIdentity(context.Background(), &hub.Identity{Method: "jwt", Subject: "user-" + strconv.Itoa(i)})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			p.Allow(ctxs[i%len(ctxs)], "chat.a", 1)
			i++
		}
	})
}

// fakeListener hands out one connection over and over, so that the
// benchmark measures the wrapper, not the kernel.
type fakeListener struct {
	net.Listener
	c net.Conn
}

func (l fakeListener) Accept() (net.Conn, error) { return l.c, nil }

type fakeConn struct {
	net.Conn
	addr *net.TCPAddr
}

func (c fakeConn) RemoteAddr() net.Addr { return c.addr }
func (c fakeConn) Close() error         { return nil }

// BenchmarkListener is what the limits add to each accepted connection:
// the per-address pacing and counts, the wrapper, and the release on
// close.
func BenchmarkListener(b *testing.B) {
	conns := limit.NewConns(limit.ConnsOptions{Max: 1 << 20, MaxPerIP: 1 << 20, NewPerIP: 1e12, NewPerIPBurst: 1 << 30})
	nc := fakeConn{addr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.1:40000"))}
	l := conns.Listen(fakeListener{c: nc}, nil)
	b.ReportAllocs()
	for b.Loop() {
		c, err := l.Accept()
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

package redis_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldhq/herald/internal/engine/enginetest"
	"github.com/heraldhq/herald/internal/engine/redis"
)

// rueidis closes the connections a cluster topology refresh replaced five
// seconds later, in a goroutine of its own that outlives Close; and a
// cluster client asks for a refresh after a delay of up to a second
// (singleflight's DelayDo, cluster.go), whose sleeping goroutine
// outlives Close too. Both end by themselves.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*clusterClient)._refresh.func2"),
		goleak.IgnoreAnyFunction("github.com/redis/rueidis.(*call).DelayDo.func1"))
}

var bg = context.Background()

// newEngine connects an engine to the Redis at url, under a prefix of its
// own so that tests sharing a server do not see each other's topics, and
// closes it when the test ends.
func newEngine(t *testing.T, url string, c enginetest.Config) *redis.Engine {
	t.Helper()
	e, err := redis.New(bg, redis.Options{URL: url, Prefix: prefixOf(t), Retention: c.Retention, DedupeWindow: c.DedupeWindow, MaxKeysPerTopic: c.MaxKeysPerTopic, Now: c.Now})
	if err != nil {
		t.Fatalf("redis.New(%s): %v", url, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// prefixOf returns a key prefix unique to the test.
func prefixOf(t *testing.T) string { return "t" + t.Name() }

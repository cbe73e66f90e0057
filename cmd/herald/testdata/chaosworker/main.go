// Command chaosworker is the worker of the consumer-group chaos test
// (../../chaos_test.go): a member of a group over the gRPC Consume stream
// that records each event it processes, then acks it, and records the
// ack's result. Records are single write(2)s to a file opened O_APPEND,
// so a kill -9 loses none that were written:
//
//	P <unix ns> <offset> <delivery> <delivery id>    processed (before the ack)
//	A <unix ns> <offset> <delivery> <delivery id> ok|err   the ack's result
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/heraldhq/herald/client"
)

func main() {
	addr := flag.String("grpc", "", "the server's gRPC address")
	group := flag.String("group", "", "the group")
	member := flag.String("member", "", "the member name")
	out := flag.String("out", "", "the record file")
	concurrency := flag.Int("concurrency", 16, "handlers at once")
	flag.Parse()
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, err := client.NewGRPC(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	record := func(s string) error {
		_, err := f.WriteString(s)
		return err
	}
	handler := func(_ context.Context, m *client.GroupMessage) error {
		return record(fmt.Sprintf("P %d %d %d %s\n", time.Now().UnixNano(), m.Event.Offset, m.Delivery, m.ID))
	}
	answered := func(m *client.GroupMessage, answer string, err error) {
		res := "ok"
		if err != nil || answer != "ack" {
			res = "err"
		}
		record(fmt.Sprintf("A %d %d %d %s %s\n", time.Now().UnixNano(), m.Event.Offset, m.Delivery, m.ID, res))
	}
	err = c.Consume(ctx, *group, handler, client.WithMember(*member), client.WithConcurrency(*concurrency), client.WithAnswered(answered))
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaosworker:", err)
		os.Exit(1)
	}
}

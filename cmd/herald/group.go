package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newGroupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Manage consumer groups: workers sharing a topic's events, with leases, acks and redelivery",
		Long: `A consumer group hands each event of its topics to one of its members at a
time, under a lease: the member acks it when done, or the event goes to
another member when the lease runs out; after max-deliveries attempts it is
parked on the group's dead-letter topic (docs/groups.md). Members consume
with "herald consume", the Go client's Consume, the gRPC Consume stream,
the WebSocket fetch command or POST /v1/groups/{group}/fetch.

These commands use the API at --server (/v1/groups).`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newGroupCreateCmd(), newGroupInfoCmd(), newGroupLsCmd(), newGroupRmCmd())
	return cmd
}

// groupFlags are the flags of herald group create.
type groupFlags struct {
	server, start, deadLetter, orderingKey string
	topics                                 []string
	ackWait                                time.Duration
	backoff                                []time.Duration
	maxDeliveries, maxInFlight, memberMax  int
}

func newGroupCreateCmd() *cobra.Command {
	var f groupFlags
	cmd := &cobra.Command{
		Use:   "create NAME --topic TOPIC [flags]",
		Short: "Create a consumer group (answers the existing one when its settings are the same)",
		Long: `Create the consumer group NAME over one or more topics (or topic patterns,
as grants write them: orders.* one segment, orders.> any depth). Creating a
group that exists with the same settings changes nothing; other settings
are refused (conflict): delete the group first. Prints the group as the
server answers it.`,
		Example: `  herald group create mailer --topic orders.created
  herald group create billing --topic 'orders.>' --start earliest --ack-wait 1m --max-deliveries 10
  herald group create thumbs --topic uploads --backoff 1s,10s,1m --dead-letter uploads.failed
  herald group create per-user --topic events --ordering-key header:user`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGroupCreate(cmd, args[0], &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	fl.StringArrayVar(&f.topics, "topic", nil, "a topic or topic pattern the group consumes (repeatable, at least one)")
	fl.StringVar(&f.start, "start", "", "where the group starts: latest (default), earliest, a cursor, or an RFC 3339 time")
	fl.DurationVar(&f.ackWait, "ack-wait", 0, "a delivery's lease (default 30s)")
	fl.IntVar(&f.maxDeliveries, "max-deliveries", 0, "deliveries of an event before it goes to the dead-letter topic (default 5)")
	fl.StringVar(&f.deadLetter, "dead-letter", "", "the dead-letter topic (default NAME.dead)")
	fl.IntVar(&f.maxInFlight, "max-in-flight", 0, "deliveries leased at once, group-wide (default 1000)")
	fl.IntVar(&f.memberMax, "member-max-in-flight", 0, "deliveries leased at once to one member (default 1000)")
	fl.DurationSliceVar(&f.backoff, "backoff", nil, "delays before redeliveries after an expired lease or a nak without delay, the last repeating (e.g. 1s,10s,1m)")
	fl.StringVar(&f.orderingKey, "ordering-key", "", "per-key ordering: idempotency_key, or header:NAME (events with one key are never in flight twice at once)")
	return cmd
}

// groupConfigWire is a group's settings in the API's form.
type groupConfigWire struct {
	Topics            []string `json:"topics"`
	Start             string   `json:"start,omitempty"`
	AckWait           string   `json:"ack_wait,omitempty"`
	MaxDeliveries     int      `json:"max_deliveries,omitempty"`
	DeadLetter        string   `json:"dead_letter,omitempty"`
	MaxInFlight       int      `json:"max_in_flight,omitempty"`
	MemberMaxInFlight int      `json:"member_max_in_flight,omitempty"`
	Backoff           []string `json:"backoff,omitempty"`
	OrderingKey       string   `json:"ordering_key,omitempty"`
}

func runGroupCreate(cmd *cobra.Command, name string, f *groupFlags) error {
	if len(f.topics) == 0 {
		return fmt.Errorf("--topic is required: the topics (or patterns) group %s consumes", name)
	}
	if f.ackWait < 0 || f.maxDeliveries < 0 || f.maxInFlight < 0 || f.memberMax < 0 {
		return fmt.Errorf("--ack-wait, --max-deliveries, --max-in-flight and --member-max-in-flight must not be negative")
	}
	cfg := groupConfigWire{
		Topics: f.topics, Start: f.start, MaxDeliveries: f.maxDeliveries, DeadLetter: f.deadLetter,
		MaxInFlight: f.maxInFlight, MemberMaxInFlight: f.memberMax, OrderingKey: f.orderingKey,
	}
	if f.ackWait > 0 {
		cfg.AckWait = f.ackWait.String()
	}
	for _, d := range f.backoff {
		if d < 0 {
			return fmt.Errorf("--backoff %v: delays must not be negative", d)
		}
		cfg.Backoff = append(cfg.Backoff, d.String())
	}
	body, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	out, err := adminAPI(cmd.Context(), f.server, http.MethodPut, groupPath(name), body)
	if err != nil {
		return err
	}
	_, err = cmd.OutOrStdout().Write(out)
	return err
}

// groupPath is the API path of a group.
func groupPath(name string) string { return "/v1/groups/" + url.PathEscape(name) }

func newGroupInfoCmd() *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Print a group's settings and state (pending, in flight per member, redelivered, dead-lettered) as JSON",
		Example: `  herald group info mailer
  herald group info mailer | jq .pending`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := adminAPI(cmd.Context(), server, http.MethodGet, groupPath(args[0]), nil)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	return cmd
}

func newGroupLsCmd() *cobra.Command {
	return newListCmd("List the consumer groups with their lag and in-flight deliveries", "/v1/groups", printGroups)
}

// groupInfoWire is what printGroups reads of a group.
type groupInfoWire struct {
	Name         string         `json:"name"`
	Topics       []string       `json:"topics"`
	Pending      uint64         `json:"pending"`
	InFlight     int            `json:"in_flight"`
	Members      map[string]int `json:"members"`
	Redelivered  uint64         `json:"redelivered"`
	DeadLettered uint64         `json:"dead_lettered"`
}

// printGroups prints GET /v1/groups as a table.
func printGroups(w io.Writer, body []byte) error {
	var list struct {
		Groups []groupInfoWire `json:"groups"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("the server's answer: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTOPICS\tPENDING\tIN FLIGHT\tMEMBERS\tREDELIVERED\tDEAD-LETTERED")
	for _, g := range list.Groups {
		members := make([]string, 0, len(g.Members))
		for m, n := range g.Members {
			members = append(members, fmt.Sprintf("%s:%d", m, n))
		}
		sort.Strings(members)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%d\n", g.Name, strings.Join(g.Topics, ","), g.Pending, g.InFlight,
			strings.Join(members, ","), g.Redelivered, g.DeadLettered)
	}
	return tw.Flush()
}

func newGroupRmCmd() *cobra.Command {
	var server string
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a consumer group and its state (its dead-letter topic stays)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := adminAPI(cmd.Context(), server, http.MethodDelete, groupPath(args[0]), nil)
			return err
		},
	}
	cmd.Flags().StringVar(&server, "server", heraldServerDefault(), "herald server URL (env HERALD_SERVER)")
	return cmd
}

package reason_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/heraldhq/herald/internal/reason"
)

// TestDocsAgree checks the protocol documents against the table: every
// HTTP status in docs/api.md's error table, every close code in
// docs/protocol.md's, every gRPC code in docs/grpc.md's.
func TestDocsAgree(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("../../docs/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	api, protocol, grpc := read("api.md"), read("protocol.md"), read("grpc.md")
	for _, r := range reason.All() {
		if r.HTTP != 0 {
			if row := fmt.Sprintf("| %d | `%s` |", r.HTTP, r.Code); !strings.Contains(api, row) {
				t.Errorf("docs/api.md has no error row %q", row)
			}
		}
		if r.WSClose != 0 && r.Code != reason.ClientClosed {
			if row := fmt.Sprintf("| %d | `%s` |", r.WSClose, r.Code); !strings.Contains(protocol, row) {
				t.Errorf("docs/protocol.md has no close code row %q", row)
			}
		}
		if r.GRPC != codes.OK {
			name := strings.ToUpper(strings.ReplaceAll(grpcName(r.GRPC), " ", "_"))
			if row := fmt.Sprintf("| `%s` | `%s` |", name, r.Code); !strings.Contains(grpc, row) {
				t.Errorf("docs/grpc.md has no status row %q", row)
			}
		}
	}
}

// grpcName is a code's name as the gRPC documentation spells it.
func grpcName(c codes.Code) string {
	if c == codes.Canceled {
		return "CANCELLED"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestTable(t *testing.T) {
	seenWS := map[uint16]reason.Code{}
	for _, r := range reason.All() {
		if got, ok := reason.Of(r.Code); !ok || got != r {
			t.Errorf("Of(%s) = %v, %v", r.Code, got, ok)
		}
		if r.Message == "" {
			t.Errorf("%s has no message", r.Code)
		}
		if r.WSClose != 0 {
			if other, dup := seenWS[r.WSClose]; dup {
				t.Errorf("close code %d is both %s and %s", r.WSClose, other, r.Code)
			}
			seenWS[r.WSClose] = r.Code
			if got, _ := reason.ByWSClose(r.WSClose); got.Code != r.Code {
				t.Errorf("ByWSClose(%d) = %s, want %s", r.WSClose, got.Code, r.Code)
			}
		}
	}
	if _, ok := reason.Of("no_such_code"); ok {
		t.Error("Of(unknown) reports known")
	}
	if reason.Retryable("no_such_code") || !reason.Retryable(reason.SlowConsumer) || reason.Retryable(reason.Forbidden) {
		t.Error("Retryable disagrees with the table")
	}
}

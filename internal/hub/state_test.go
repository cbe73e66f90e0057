package hub_test

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/hub"
)

// stateless is an engine that keeps no consumer state: it has only the
// methods of hub.Engine.
type stateless struct{ hub.Engine }

func TestHubState(t *testing.T) {
	h := newHub(t, hub.Options{}, memory.Options{})
	s, ok := h.State()
	if !ok {
		t.Fatal("State() over the memory engine: false")
	}
	ctx := context.Background()
	if err := s.ApplyState(ctx, "group.a", []hub.StateOp{{Key: "pos", Set: true, Value: []byte("3")}}); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.LoadState(ctx, "group.a", "pos"); err != nil || !ok || string(v) != "3" {
		t.Errorf("LoadState = %q, %v, %v", v, ok, err)
	}

	eng := memory.New(memory.Options{})
	defer eng.Close()
	h2 := hub.New(stateless{eng}, hub.Options{})
	defer h2.Close()
	if _, ok := h2.State(); ok {
		t.Error("State() over an engine without StateStore: true")
	}
}

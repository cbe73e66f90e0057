package memory_test

import (
	"testing"

	"github.com/heraldhq/herald/internal/engine/enginetest"
	"github.com/heraldhq/herald/internal/engine/memory"
	"github.com/heraldhq/herald/internal/hub"
)

func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T, c enginetest.Config) hub.Engine {
		e := memory.New(memory.Options{Retention: c.Retention, DedupeWindow: c.DedupeWindow, MaxKeysPerTopic: c.MaxKeysPerTopic, Now: c.Now})
		t.Cleanup(func() { e.Close() })
		return e
	})
}

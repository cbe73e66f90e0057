package durable_test

import (
	"testing"

	"github.com/heraldhq/herald/internal/engine/durable"
	"github.com/heraldhq/herald/internal/engine/enginetest"
	"github.com/heraldhq/herald/internal/hub"
)

func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T, c enginetest.Config) hub.Engine {
		return open(t, t.TempDir(), durable.Options{Retention: c.Retention, DedupeWindow: c.DedupeWindow, MaxKeysPerTopic: c.MaxKeysPerTopic, Now: c.Now})
	})
}

func TestConformanceRestart(t *testing.T) {
	enginetest.RunRestart(t, func(t *testing.T, dir string) hub.Engine {
		e, err := durable.Open(dir, durable.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return e
	})
}

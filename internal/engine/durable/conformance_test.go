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

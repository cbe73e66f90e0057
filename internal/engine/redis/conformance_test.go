package redis_test

import (
	"testing"

	"github.com/heraldhq/herald/internal/engine/enginetest"
	"github.com/heraldhq/herald/internal/engine/redis/redistest"
	"github.com/heraldhq/herald/internal/hub"
)

func TestConformanceStandalone(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	enginetest.Run(t, func(t *testing.T, c enginetest.Config) hub.Engine {
		return newEngine(t, srv.URL(), c)
	})
}

func TestConformanceCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	enginetest.Run(t, func(t *testing.T, c enginetest.Config) hub.Engine {
		return newEngine(t, cl.URL(), c)
	})
}

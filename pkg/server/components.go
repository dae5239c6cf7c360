package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/skiff-org/skiff/pkg/agent"
	"github.com/skiff-org/skiff/pkg/apiserver/openapi"
	"github.com/skiff-org/skiff/pkg/controllermanager"
	"github.com/skiff-org/skiff/pkg/registry"
	"github.com/skiff-org/skiff/pkg/scheduler"
)

// openAPIHandler serves /openapi/ from documents built once, in the
// background: building them takes a few hundred milliseconds that need not
// delay /readyz; a request that comes sooner waits for them.
func openAPIHandler(resources []*registry.Resource, log *slog.Logger) http.Handler {
	h := &lazyOpenAPI{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		start := time.Now()
		docs, err := openapi.New(resources, Version.GitVersion)
		if err != nil {
			// Without OpenAPI kubectl cannot validate or explain; the API still works.
			log.Error("building OpenAPI documents failed", "err", err)
			return
		}
		h.docs = docs
		log.Debug("built OpenAPI documents", "took", time.Since(start))
	}()
	return h
}

type lazyOpenAPI struct {
	done chan struct{}
	docs http.Handler // set before done closes
}

func (h *lazyOpenAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case <-h.done:
	case <-r.Context().Done():
		return
	}
	if h.docs == nil {
		http.Error(w, "OpenAPI documents are not available; see the server log", http.StatusServiceUnavailable)
		return
	}
	h.docs.ServeHTTP(w, r)
}

// startComponents starts the scheduler, the controller manager and the
// agent, each talking to the API server over loopback like any client.
func startComponents(ctx context.Context, wg *sync.WaitGroup, errc chan<- error, cfg Config, run *Running) {
	launch := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	log := cfg.Log
	if !cfg.DisableScheduler {
		launch("scheduler", func(ctx context.Context) error {
			return scheduler.Run(ctx, scheduler.Config{Client: run.Admin, Log: log.With("component", "scheduler")})
		})
	}
	if !cfg.DisableControllers {
		launch("controller manager", func(ctx context.Context) error {
			return controllermanager.Run(ctx, controllermanager.Config{
				Client: run.Admin, Log: log.With("component", "controller-manager"),
				LeaderElect: cfg.LeaderElect, NodeMonitorGracePeriod: cfg.NodeMonitorGracePeriod,
				ClusterCIDR: cfg.ClusterCIDR, RootCA: run.Bundle.CAPEM,
			})
		})
	}
	if !cfg.DisableAgent {
		launch("agent", func(ctx context.Context) error {
			return agent.Run(ctx, agent.Config{
				RestConfig: run.Admin, DataDir: filepath.Join(cfg.DataDir, "agent"),
				ClusterDNS: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain,
				ServiceCIDR: cfg.ServiceCIDR, ClusterCIDR: cfg.ClusterCIDR,
				NodeIP: cfg.AdvertiseAddress, ControlPlane: true, ProxyBackend: cfg.ProxyBackend,
				Log: log.With("component", "agent"),
			})
		})
	}
}

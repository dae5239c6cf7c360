package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"github.com/skiff-org/skiff/pkg/registry"
)

// openAPIHandler serves /openapi/ when the documents can be built.
func openAPIHandler(resources []*registry.Resource, log *slog.Logger) http.Handler {
	return nil
}

// startComponents starts the scheduler, the controller manager and the
// agent, each talking to the API server over loopback like any client.
func startComponents(ctx context.Context, wg *sync.WaitGroup, errc chan<- error, cfg Config, run *Running) {
}

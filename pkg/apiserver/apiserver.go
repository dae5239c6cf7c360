// Package apiserver serves the Kubernetes REST API over the objects kept in
// package storage: one generic handler for every resource, driven by the
// per-resource strategies in package registry, with lists and watches served
// from per-resource watch caches. Only this package and storage touch etcd.
package apiserver

import (
	"context"
	"crypto/subtle"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"

	"github.com/skiff-org/skiff/pkg/registry"
	"github.com/skiff-org/skiff/pkg/satoken"
	"github.com/skiff-org/skiff/pkg/storage"
	"github.com/skiff-org/skiff/pkg/watchcache"
)

// Config says what the API server serves and how.
type Config struct {
	Store     *storage.Store
	Resources []*registry.Resource
	// Token is a bearer secret accepted as the admin; client certificates
	// signed by ClientCA are accepted too.
	Token    string
	ClientCA *x509.CertPool
	// ServiceAccountTokens signs the tokens of the TokenRequest API and
	// authenticates them; nil serves neither.
	ServiceAccountTokens *satoken.Signer
	CAPEM                []byte // served at /cacerts so agents can pin it by hash

	ServiceCIDR              *net.IPNet
	NodePortMin, NodePortMax int
	DefaultTolerationSeconds int64

	// OpenAPI serves /openapi/; nil serves 404.
	OpenAPI http.Handler
	// KubeletTransport reaches kubelets for logs, exec and port-forward.
	KubeletTransport http.RoundTripper

	Bootstrap BootstrapConfig

	MaxBodyBytes int64 // 3 MiB when 0, as Kubernetes
	Version      version.Info
	Log          *slog.Logger
}

// Server is the API server's HTTP handler.
type Server struct {
	cfg       Config
	resources map[schema.GroupVersionResource]*resource
	byGV      map[schema.GroupVersion][]*resource
	groups    []string // API groups in discovery order ("" first)
	alloc     *allocator
	now       func() time.Time

	readyMu sync.RWMutex
	ready   bool
}

// resource is one served resource with its cache.
type resource struct {
	*registry.Resource
	prefix string // storage key prefix, ending in "/"
	cache  *watchcache.Cache
	fm     func() (*fieldManagers, error) // built on first use
}

// New builds the server; Run starts its caches.
func New(cfg Config) (*Server, error) {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 3 << 20
	}
	if cfg.NodePortMin == 0 {
		cfg.NodePortMin, cfg.NodePortMax = 30000, 32767
	}
	s := &Server{
		cfg:       cfg,
		resources: map[schema.GroupVersionResource]*resource{},
		byGV:      map[schema.GroupVersion][]*resource{},
		now:       time.Now,
	}
	seen := map[string]bool{}
	for _, r := range cfg.Resources {
		res := &resource{Resource: r, prefix: keyPrefix(r)}
		res.cache = watchcache.New(cfg.Store, res.prefix, decoderOf(res), 100000, cfg.Log)
		res.fm = sync.OnceValues(func() (*fieldManagers, error) { return newFieldManagers(r) })
		s.resources[r.GroupVersionResource] = res
		gv := r.GroupVersion()
		s.byGV[gv] = append(s.byGV[gv], res)
		if !seen[r.Group] {
			seen[r.Group] = true
			s.groups = append(s.groups, r.Group)
		}
	}
	for _, rv := range reviews {
		if !seen[rv.gvr.Group] {
			seen[rv.gvr.Group] = true
			s.groups = append(s.groups, rv.gvr.Group)
		}
	}
	if cfg.ServiceCIDR != nil {
		s.alloc = newAllocator(cfg.Store, cfg.ServiceCIDR, cfg.NodePortMin, cfg.NodePortMax)
	}
	return s, nil
}

// keyPrefix is /registry/<group>/<resource>/, with "core" for the legacy
// group, of the resource whose form r is stored in.
func keyPrefix(r *registry.Resource) string {
	gvr := r.GroupVersionResource
	if r.Storage != nil {
		gvr = r.Storage.GroupVersionResource
	}
	g := gvr.Group
	if g == "" {
		g = "core"
	}
	return "/registry/" + g + "/" + gvr.Resource + "/"
}

// key is where one object lives.
func (r *resource) key(ns, name string) string {
	if r.Namespaced {
		return r.prefix + ns + "/" + name
	}
	return r.prefix + name
}

// listPrefix is the key prefix of a namespace's objects, or all of them.
func (r *resource) listPrefix(ns string) string {
	if r.Namespaced && ns != "" {
		return r.prefix + ns + "/"
	}
	return r.prefix
}

func (r *resource) groupResource() schema.GroupResource {
	return schema.GroupResource{Group: r.Group, Resource: r.GroupVersionResource.Resource}
}

// Run fills the watch caches, creates what a cluster has from the start,
// and keeps caches and etcd's history in shape until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range s.resources {
		wg.Add(1)
		go func(r *resource) { defer wg.Done(); r.cache.Run(ctx) }(r)
	}
	for _, r := range s.resources {
		if err := r.cache.WaitReady(ctx); err != nil {
			wg.Wait()
			return err
		}
	}
	if err := s.bootstrap(ctx); err != nil {
		return err
	}
	s.readyMu.Lock()
	s.ready = true
	s.readyMu.Unlock()
	wg.Add(1)
	go func() { defer wg.Done(); s.cfg.Store.RunCompactor(ctx, 5*time.Minute) }()
	wg.Wait()
	return nil
}

// Ready reports whether the caches are loaded and the bootstrap is done.
func (s *Server) Ready() bool {
	s.readyMu.RLock()
	defer s.readyMu.RUnlock()
	return s.ready
}

func (s *Server) lookup(gvr schema.GroupVersionResource) *resource { return s.resources[gvr] }

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.cfg.Log.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v)
			writeError(w, r, fmt.Errorf("internal error: %v", v))
		}
	}()
	path := r.URL.Path
	switch path {
	case "/healthz", "/livez", "/readyz":
		if path == "/readyz" && !s.Ready() {
			http.Error(w, "[-]informer-sync failed: not ready", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok"))
		return
	case "/version":
		writeJSON(w, http.StatusOK, s.cfg.Version)
		return
	case "/cacerts":
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(s.cfg.CAPEM)
		return
	}
	if strings.HasPrefix(path, "/healthz/") || strings.HasPrefix(path, "/livez/") || strings.HasPrefix(path, "/readyz/") {
		w.Write([]byte("ok"))
		return
	}
	if _, ok := s.authenticate(r); !ok {
		writeStatus(w, r, metav1.Status{Status: metav1.StatusFailure, Message: "Unauthorized", Reason: metav1.StatusReasonUnauthorized, Code: http.StatusUnauthorized})
		return
	}
	if strings.HasPrefix(path, "/debug/pprof") {
		// Kubernetes serves profiles to authenticated clients by default
		// (--profiling); so does skiff, to find where time and memory go.
		servePprof(w, r)
		return
	}
	if signer := s.cfg.ServiceAccountTokens; signer != nil && (path == "/.well-known/openid-configuration" || path == "/openid/v1/jwks") {
		// Served to authenticated callers, as Kubernetes' default
		// service-account-issuer-discovery binding does.
		if path == "/openid/v1/jwks" {
			w.Header().Set("Content-Type", "application/jwk-set+json")
			w.Write(signer.JWKS())
		} else {
			w.Header().Set("Content-Type", "application/json")
			w.Write(signer.Discovery(signer.Issuer + "/openid/v1/jwks"))
		}
		return
	}
	if strings.HasPrefix(path, "/openapi/") {
		if s.cfg.OpenAPI == nil {
			http.NotFound(w, r)
			return
		}
		s.cfg.OpenAPI.ServeHTTP(w, r)
		return
	}
	if !s.Ready() {
		writeError(w, r, errNotReady)
		return
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		writeError(w, r, errTooLarge)
		return
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	}
	s.route(w, r)
}

// authenticate says who a request comes from: a client certificate verified
// against the cluster CA (its common name and organizations), the admin
// bearer secret, or a service account token.
func (s *Server) authenticate(r *http.Request) (authenticationv1.UserInfo, bool) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		subj := r.TLS.VerifiedChains[0][0].Subject
		return authenticationv1.UserInfo{Username: subj.CommonName, Groups: append(slices.Clone(subj.Organization), "system:authenticated")}, true
	}
	h := r.Header.Get("Authorization")
	if !strings.HasPrefix(h, "Bearer ") {
		return authenticationv1.UserInfo{}, false
	}
	tok := strings.TrimPrefix(h, "Bearer ")
	if s.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.Token)) == 1 {
		return authenticationv1.UserInfo{Username: "admin", Groups: []string{"system:masters", "system:authenticated"}}, true
	}
	return s.tokenUser(r.Context(), tok)
}

var _ runtime.Object = (*metav1.Status)(nil)

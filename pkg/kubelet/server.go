package kubelet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// serve runs the kubelet's HTTPS endpoints until ctx ends.
func (k *Kubelet) serve(ctx context.Context) error {
	cert, err := selfSignedCert(k.cfg.NodeName, k.cfg.NodeIP)
	if err != nil {
		return err
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.VerifyClientCertIfGiven}
	if pool, err := k.clientCAs(); err == nil {
		tlsCfg.ClientCAs = pool
	} else {
		k.log.Warn("kubelet server has no client CA: only /healthz will answer", "err", err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(k.cfg.Port)))
	if err != nil {
		return fmt.Errorf("kubelet: listen on port %d (is another kubelet running? choose another with --kubelet-port): %w", k.cfg.Port, err)
	}
	srv := &http.Server{Handler: k.handler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		srv.Close()
	}()
	err = srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// clientCAs is the cluster CA from the rest config: the API server calls in
// with its client certificate, signed by it.
func (k *Kubelet) clientCAs() (*x509.CertPool, error) {
	rc := k.cfg.RestConfig
	if rc == nil {
		return nil, errors.New("no rest config")
	}
	data := rc.TLSClientConfig.CAData
	if len(data) == 0 && rc.TLSClientConfig.CAFile != "" {
		var err error
		if data, err = os.ReadFile(rc.TLSClientConfig.CAFile); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, errors.New("no CA certificate in the rest config")
	}
	return pool, nil
}

func selfSignedCert(name, ip string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name + "@kubelet"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{name, "localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	if p := net.ParseIP(ip); p != nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, p)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func (k *Kubelet) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", k.authn(k.serveLogs))
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", k.authn(k.serveExec))
	mux.HandleFunc("/exec/{ns}/{pod}/{uid}/{container}", k.authn(k.serveExec))
	mux.HandleFunc("/attach/{ns}/{pod}/{container}", k.authn(k.serveAttach))
	mux.HandleFunc("/attach/{ns}/{pod}/{uid}/{container}", k.authn(k.serveAttach))
	mux.HandleFunc("/portForward/{ns}/{pod}", k.authn(k.servePortForward))
	mux.HandleFunc("/portForward/{ns}/{pod}/{uid}", k.authn(k.servePortForward))
	return mux
}

// authn admits callers that presented a client certificate the cluster CA
// signed (the TLS handshake verified it).
func (k *Kubelet) authn(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "Unauthorized: a client certificate signed by the cluster CA is required", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

// lookup finds the pod and its runtime view for a request.
func (k *Kubelet) lookup(r *http.Request) (*v1.Pod, podView, int, error) {
	ns, name := r.PathValue("ns"), r.PathValue("pod")
	obj, ok, err := k.pods.GetIndexer().GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil, podView{}, http.StatusNotFound, fmt.Errorf("pod %q not found on this node", ns+"/"+name)
	}
	pod := obj.(*v1.Pod)
	if uid := r.PathValue("uid"); uid != "" && uid != string(pod.UID) {
		return nil, podView{}, http.StatusNotFound, fmt.Errorf("pod %q with uid %s not found", name, uid)
	}
	view, err := k.podView(r.Context(), pod.UID)
	if err != nil {
		return nil, podView{}, http.StatusInternalServerError, err
	}
	return pod, view, 0, nil
}

// runningContainer is the running instance of the requested container.
func (k *Kubelet) runningContainer(r *http.Request) (*containerInstance, int, error) {
	pod, view, code, err := k.lookup(r)
	if err != nil {
		return nil, code, err
	}
	name := r.PathValue("container")
	if findContainer(pod, name) == nil {
		return nil, http.StatusBadRequest, fmt.Errorf("container %s is not valid for pod %s", name, pod.Name)
	}
	inst := view.latest(name)
	if inst == nil || !inst.running() {
		return nil, http.StatusBadRequest, fmt.Errorf("container %s in pod %s is not running", name, pod.Name)
	}
	return inst, 0, nil
}

func boolParam(q url.Values, name string) bool {
	v := q.Get(name)
	return v == "1" || v == "true" || v == "True"
}

func intParam(q url.Values, name string) (*int64, error) {
	v := q.Get(name)
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("%s must be a non-negative integer", name)
	}
	return &n, nil
}

func (k *Kubelet) serveLogs(w http.ResponseWriter, r *http.Request) {
	pod, view, code, err := k.lookup(r)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	name := r.PathValue("container")
	if findContainer(pod, name) == nil {
		http.Error(w, fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	opts := logOptions{Follow: boolParam(q, "follow"), Timestamps: boolParam(q, "timestamps")}
	if opts.TailLines, err = intParam(q, "tailLines"); err == nil {
		opts.LimitBytes, err = intParam(q, "limitBytes")
	}
	var since *int64
	if err == nil {
		since, err = intParam(q, "sinceSeconds")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if since != nil {
		t := time.Now().Add(-time.Duration(*since) * time.Second)
		opts.Since = &t
	}
	if s := q.Get("sinceTime"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			http.Error(w, "sinceTime must be RFC 3339", http.StatusBadRequest)
			return
		}
		opts.Since = &t
	}

	var inst *containerInstance
	if boolParam(q, "previous") {
		var prevID string
		for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
			if cs.Name == name && cs.LastTerminationState.Terminated != nil {
				prevID = cs.LastTerminationState.Terminated.ContainerID
			}
		}
		for i := range view.Containers {
			if prevID != "" && k.runtimeName+"://"+view.Containers[i].ID == prevID {
				inst = &view.Containers[i]
			}
		}
		if inst == nil {
			http.Error(w, fmt.Sprintf("previous terminated container %q in pod %q not found", name, pod.Name), http.StatusBadRequest)
			return
		}
		opts.Follow = false
	} else if inst = view.latest(name); inst == nil {
		http.Error(w, fmt.Sprintf("container %q in pod %q is waiting to start: ContainerCreating", name, pod.Name), http.StatusBadRequest)
		return
	}
	path := inst.LogPath
	if path == "" {
		path = filepath.Join(name, strconv.Itoa(int(inst.Attempt))+".log")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(k.podLogDir(pod), path)
	}
	id := inst.ID
	done := func() bool {
		st, err := k.rt.ContainerStatus(r.Context(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
		return err != nil || st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	fw := flushWriter{w}
	if err := writeLogs(r.Context(), path, opts, fw, done); err != nil && !errors.Is(err, os.ErrNotExist) {
		k.log.Debug("serving logs", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

// flushWriter sends every write to the client at once (kubectl logs -f).
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }
func (f flushWriter) Flush() {
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
}

func (k *Kubelet) serveExec(w http.ResponseWriter, r *http.Request) {
	inst, code, err := k.runningContainer(r)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	q := r.URL.Query()
	resp, err := k.rt.Exec(r.Context(), &runtimeapi.ExecRequest{ContainerId: inst.ID, Cmd: q["command"],
		Tty: boolParam(q, "tty"), Stdin: boolParam(q, "input") || boolParam(q, "stdin"),
		Stdout: boolParam(q, "output") || boolParam(q, "stdout"), Stderr: boolParam(q, "error") || boolParam(q, "stderr")})
	if err != nil {
		http.Error(w, runtimeMessage(err), http.StatusInternalServerError)
		return
	}
	k.proxyStream(w, r, resp.Url)
}

func (k *Kubelet) serveAttach(w http.ResponseWriter, r *http.Request) {
	inst, code, err := k.runningContainer(r)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	q := r.URL.Query()
	resp, err := k.rt.Attach(r.Context(), &runtimeapi.AttachRequest{ContainerId: inst.ID,
		Tty: boolParam(q, "tty"), Stdin: boolParam(q, "input") || boolParam(q, "stdin"),
		Stdout: boolParam(q, "output") || boolParam(q, "stdout"), Stderr: boolParam(q, "error") || boolParam(q, "stderr")})
	if err != nil {
		http.Error(w, runtimeMessage(err), http.StatusInternalServerError)
		return
	}
	k.proxyStream(w, r, resp.Url)
}

func (k *Kubelet) servePortForward(w http.ResponseWriter, r *http.Request) {
	_, view, code, err := k.lookup(r)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	sb := view.sandbox()
	if sb == nil || !sb.Ready {
		http.Error(w, "pod sandbox is not ready", http.StatusBadRequest)
		return
	}
	var ports []int32
	for _, p := range r.URL.Query()["ports"] {
		if n, err := strconv.Atoi(p); err == nil {
			ports = append(ports, int32(n))
		}
	}
	resp, err := k.rt.PortForward(r.Context(), &runtimeapi.PortForwardRequest{PodSandboxId: sb.ID, Port: ports})
	if err != nil {
		http.Error(w, runtimeMessage(err), http.StatusInternalServerError)
		return
	}
	k.proxyStream(w, r, resp.Url)
}

// proxyStream hands the (upgrading) request to the runtime's streaming
// server at target, keeping the caller's query for protocol options.
func (k *Kubelet) proxyStream(w http.ResponseWriter, r *http.Request, target string) {
	u, err := url.Parse(target)
	if err != nil {
		http.Error(w, "runtime returned a bad streaming URL", http.StatusInternalServerError)
		return
	}
	if u.Host == "" {
		http.Error(w, "runtime returned a relative streaming URL", http.StatusInternalServerError)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.URL.Path = u.Scheme, u.Host, u.Path
			if u.RawQuery != "" {
				pr.Out.URL.RawQuery = u.RawQuery
			}
			pr.Out.Host = u.Host
		},
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // the runtime's own local server
		FlushInterval: -1,
		ErrorLog:      nil,
	}
	rp.ServeHTTP(w, r)
}

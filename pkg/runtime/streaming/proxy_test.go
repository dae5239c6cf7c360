package streaming

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestThroughReverseProxy puts an HTTPS reverse proxy configured as the
// kubelet's (pkg/kubelet/server.go proxyStream) between the clients and the
// server: upgrades of both kinds must pass through it.
func TestThroughReverseProxy(t *testing.T) {
	s := startServer(t, &fakeRuntime{})
	target, _ := url.Parse(s.URL())
	proxy := httptest.NewTLSServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = target.Scheme, target.Host
			pr.Out.Host = target.Host
		},
		FlushInterval: -1,
	})
	defer proxy.Close()
	cfg := &rest.Config{TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	via := func(u string) string { return strings.Replace(u, s.URL(), proxy.URL, 1) }

	for _, tr := range []string{"spdy", "websocket"} {
		resp, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"exit", "7"}, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		var e remotecommand.Executor
		if tr == "spdy" {
			u, _ := url.Parse(via(resp.Url))
			e, err = remotecommand.NewSPDYExecutor(cfg, "POST", u)
		} else {
			e, err = remotecommand.NewWebSocketExecutor(cfg, "GET", via(resp.Url))
		}
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		err = e.StreamWithContext(context.Background(), remotecommand.StreamOptions{Stdout: &out})
		var ce exec.CodeExitError
		if !errors.As(err, &ce) || ce.Code != 7 {
			t.Errorf("%s via proxy: exec(exit 7) = %v, want exit code 7", tr, err)
		}
	}

	resp, _ := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "sb", Port: []int32{80}})
	u, _ := url.Parse(via(resp.Url))
	d, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, errs := forward(t, d, 80, "hi\n"); got != "sb:80:hi\n" {
		t.Errorf("tunnelled port-forward via proxy = %q (%s), want %q", got, errs, "sb:80:hi\n")
	}
}

package kubectltest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/skiff-org/skiff/internal/testcluster"
	"github.com/skiff-org/skiff/pkg/apiserver/openapi"
	"github.com/skiff-org/skiff/pkg/registry"
)

// kubectls returns the kubectl binaries to test with: the one on PATH and
// the pinned older and newer versions that lie beside the real binary.
func kubectls(t *testing.T) map[string]string {
	path, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("no kubectl on PATH")
	}
	out := map[string]string{"kubectl": path}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		for _, v := range []string{"kubectl.1.27", "kubectl.1.33"} {
			p := filepath.Join(filepath.Dir(real), v)
			if _, err := os.Stat(p); err == nil {
				out[v] = p
			}
		}
	}
	return out
}

// frontWith serves /openapi/ from docs and forwards everything else to the
// cluster, on plain HTTP with the cluster's admin credentials added, so that
// kubectl sees these documents whatever the server itself publishes.
func frontWith(t *testing.T, cfg *rest.Config, docs http.Handler) string {
	t.Helper()
	transport, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	proxy.Transport = transport
	proxy.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/openapi/") {
			docs.ServeHTTP(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: skiff
  cluster:
    server: %s
contexts:
- name: skiff
  context:
    cluster: skiff
    user: skiff
current-context: skiff
users:
- name: skiff
  user: {}
`, server)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type kubectlRun struct {
	bin, kubeconfig, home string
}

func (k kubectlRun) run(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.bin, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + k.home, "KUBECACHEDIR=" + filepath.Join(k.home, "cache")}
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

const goodDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        ports:
        - containerPort: 80
`

// badDeployment has a field no Deployment has.
var badDeployment = strings.Replace(goodDeployment, "  replicas: 1\n", "  replicas: 1\n  replicaz: 2\n", 1)

func TestKubectl(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and runs kubectl")
	}
	bins := kubectls(t)
	c := testcluster.Start(t, testcluster.Options{})
	kubeconfig := c.Kubeconfig
	// The server publishes these documents itself; should it stop doing so,
	// put them in front of it so that this package is still tested.
	if _, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/openapi/v3").DoRaw(context.Background()); err != nil {
		t.Logf("the server does not serve /openapi/v3 (%v): serving it in front", err)
		docs, err := openapi.New(registry.All(), "v1.33.0")
		if err != nil {
			t.Fatalf("openapi.New: %v", err)
		}
		kubeconfig = writeKubeconfig(t, frontWith(t, c.Config, docs))
	}
	for name, bin := range bins {
		t.Run(name, func(t *testing.T) {
			k := kubectlRun{bin: bin, kubeconfig: kubeconfig, home: t.TempDir()}
			checkKubectl(t, k)
		})
	}
}

func checkKubectl(t *testing.T, k kubectlRun) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"explain", "deployment.spec.strategy"},
			[]string{"strategy", "DeploymentStrategy", "rollingUpdate", "The deployment strategy to use"}},
		{[]string{"explain", "pods.spec.containers", "--recursive"},
			[]string{"containers", "containerPort", "livenessProbe", "volumeMounts"}},
		{[]string{"explain", "svc.spec.ports.targetPort"},
			[]string{"targetPort", "Number or name of the port"}},
		{[]string{"explain", "deployment.spec.strategy", "--output=plaintext-openapiv2"},
			[]string{"strategy", "DeploymentStrategy", "rollingUpdate"}},
	}
	for _, tt := range tests {
		out, err := k.run(t, "", tt.args...)
		if err != nil {
			t.Errorf("kubectl %s: %v\n%s", strings.Join(tt.args, " "), err, out)
			continue
		}
		t.Logf("kubectl %s:\n%s", strings.Join(tt.args, " "), head(out, 12))
		for _, want := range tt.want {
			if !strings.Contains(out, want) {
				t.Errorf("kubectl %s prints no %q:\n%s", strings.Join(tt.args, " "), want, out)
			}
		}
	}

	// apply validates by default: the unknown field is rejected and named,
	// before or after a server-side dry run.
	for _, args := range [][]string{{"apply", "--dry-run=server", "-f", "-"}, {"apply", "-f", "-"}} {
		out, err := k.run(t, badDeployment, args...)
		t.Logf("kubectl %s (unknown field): %s", strings.Join(args, " "), out)
		if err == nil || !strings.Contains(out, "replicaz") {
			t.Errorf("kubectl %s of an unknown field: err %v, output %q; want a failure naming replicaz", strings.Join(args, " "), err, out)
		}
	}
	for _, args := range [][]string{{"apply", "--dry-run=server", "-f", "-"}, {"apply", "-f", "-"}} {
		if out, err := k.run(t, goodDeployment, args...); err != nil {
			t.Errorf("kubectl %s of a valid Deployment: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func head(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

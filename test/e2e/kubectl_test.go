package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestKubectl walks what a user does with kubectl against a fresh server,
// for every kubectl version installed.
func TestKubectl(t *testing.T) {
	for name, bin := range kubectls(t) {
		t.Run(name, func(t *testing.T) { kubectlScenario(t, bin) })
	}
}

func kubectlScenario(t *testing.T, k string) {
	s := startServer(t)
	app, err := os.ReadFile("testdata/app.yaml")
	if err != nil {
		t.Fatal(err)
	}
	appFile := t.TempDir() + "/app.yaml"
	write := func(content string) {
		if err := os.WriteFile(appFile, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(string(app))

	wantIn(t, "get ns", s.must(t, k, "get", "ns"), "default", "kube-system", "kube-public", "kube-node-lease", "Active")
	wantIn(t, "api-resources", s.must(t, k, "api-resources"),
		"deployments", "deploy", "apps/v1", "pods", "po", "services", "svc", "leases", "coordination.k8s.io/v1", "endpointslices", "events.k8s.io/v1")
	wantIn(t, "version", s.must(t, k, "version"), "Server Version", "v1.33")
	// Every authenticated user may do everything until RBAC: the reviews say so.
	wantIn(t, "auth can-i", s.must(t, k, "auth", "can-i", "delete", "deployments"), "yes")
	wantIn(t, "explain", s.must(t, k, "explain", "deployment.spec.strategy"), "RollingUpdate", "rollingUpdate", "DESCRIPTION")

	// Apply, apply again (unchanged), edit and apply (configured).
	wantIn(t, "apply", s.must(t, k, "apply", "-f", appFile),
		"deployment.apps/web created", "service/web created", "configmap/web-config created", "secret/web-secret created")
	wantIn(t, "re-apply", s.must(t, k, "apply", "-f", appFile),
		"deployment.apps/web unchanged", "service/web unchanged", "configmap/web-config unchanged", "secret/web-secret unchanged")
	write(strings.Replace(string(app), "greeting: hello", "greeting: bonjour", 1))
	wantIn(t, "edited apply", s.must(t, k, "apply", "-f", appFile), "configmap/web-config configured", "deployment.apps/web unchanged")

	out := s.must(t, k, "get", "deploy,rs,po,svc", "-o", "wide")
	wantIn(t, "get -o wide", out, "deployment.apps/web", "CONTAINERS", "IMAGES", "SELECTOR", "service/web", "NodePort", "80:3")
	if !regexp.MustCompile(`service/web\s+NodePort\s+10\.43\.\d+\.\d+\s+<none>\s+80:3\d{4}/TCP`).MatchString(out) {
		t.Errorf("service row not as Kubernetes prints it:\n%s", out)
	}
	var dep map[string]interface{}
	if err := json.Unmarshal([]byte(s.must(t, k, "get", "deploy", "web", "-o", "json")), &dep); err != nil {
		t.Fatalf("-o json is not JSON: %v", err)
	}
	wantIn(t, "-o yaml", s.must(t, k, "get", "cm", "web-config", "-o", "yaml"), "greeting: bonjour", "resourceVersion:", "uid:")
	wantIn(t, "secret data", s.must(t, k, "get", "secret", "web-secret", "-o", "jsonpath={.data.password}"), "czNjcmV0")
	wantIn(t, "-l", s.must(t, k, "get", "deploy", "-l", "app=web"), "web")
	if out := s.must(t, k, "get", "deploy", "-l", "app=nothing"); strings.Contains(out, "web") {
		t.Errorf("-l app=nothing listed web:\n%s", out)
	}
	wantIn(t, "--field-selector", s.must(t, k, "get", "svc", "--field-selector", "metadata.name=kubernetes"), "kubernetes")

	// get -w sees later changes.
	watch := exec.Command(k, "--kubeconfig", s.kubeconfig, "get", "cm", "-w", "--request-timeout=10s")
	var wout strings.Builder
	watch.Stdout, watch.Stderr = &wout, &wout
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(wout.String(), "web-config") })
	s.must(t, k, "create", "configmap", "late", "--from-literal=a=b")
	waitFor(t, func() bool { return strings.Contains(wout.String(), "late") })
	watch.Process.Kill()
	watch.Wait()

	wantIn(t, "label", s.must(t, k, "label", "deploy", "web", "tier=frontend"), "deployment.apps/web labeled")
	wantIn(t, "annotate", s.must(t, k, "annotate", "svc", "web", "owner=me"), "service/web annotate")
	wantIn(t, "patch deploy", s.must(t, k, "patch", "deploy", "web", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:1.36"}]}}}}`), "patched")
	wantIn(t, "patch svc", s.must(t, k, "patch", "svc", "web", "--type=merge", "-p", `{"metadata":{"labels":{"x":"y"}}}`), "patched")
	wantIn(t, "patch cm", s.must(t, k, "patch", "cm", "web-config", "--type=json", "-p", `[{"op":"add","path":"/data/extra","value":"1"}]`), "patched")
	wantIn(t, "patch secret", s.must(t, k, "patch", "secret", "web-secret", "-p", `{"stringData":{"more":"x"}}`), "patched")
	wantIn(t, "scale", s.must(t, k, "scale", "deploy", "web", "--replicas=5"), "scaled")
	wantIn(t, "scaled", s.must(t, k, "get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"), "5")

	wantIn(t, "create ns", s.must(t, k, "create", "namespace", "team"), "namespace/team created")
	wantIn(t, "create cm", s.must(t, k, "create", "configmap", "c", "-n", "team", "--from-literal=k=v"), "configmap/c created")
	wantIn(t, "create secret", s.must(t, k, "create", "secret", "generic", "s", "-n", "team", "--from-literal=k=v"), "secret/s created")
	wantIn(t, "server-side apply", s.must(t, k, "apply", "--server-side", "--force-conflicts", "-f", appFile), "serverside-applied")

	// An invalid manifest names the bad fields.
	out, err = s.kubectl(t, k, "", "apply", "-f", "testdata/invalid-deployment.yaml")
	if err == nil {
		t.Fatalf("invalid manifest accepted:\n%s", out)
	}
	wantIn(t, "invalid", out, `The Deployment "bad" is invalid`, "spec.replicas", "spec.template.spec.containers[0].image: Required value")

	// A stale update is a conflict.
	stale := s.must(t, k, "get", "cm", "web-config", "-o", "json")
	s.must(t, k, "patch", "cm", "web-config", "--type=merge", "-p", `{"data":{"n":"1"}}`)
	out, err = s.kubectl(t, k, stale, "replace", "-f", "-")
	if err == nil || !strings.Contains(out, "the object has been modified") {
		t.Errorf("stale replace = %v:\n%s", err, out)
	}

	wantIn(t, "delete -f", s.must(t, k, "delete", "-f", appFile, "--wait=false"), `deployment.apps "web" deleted`, `service "web" deleted`)

	// kill -9 and restart on the same data dir: everything is still there,
	// with the same uid and resourceVersion.
	before := s.must(t, k, "get", "cm,secret,ns", "-A", "-o", "custom-columns=NAME:.metadata.name,UID:.metadata.uid,RV:.metadata.resourceVersion")
	s.kill()
	s.start(t)
	after := s.must(t, k, "get", "cm,secret,ns", "-A", "-o", "custom-columns=NAME:.metadata.name,UID:.metadata.uid,RV:.metadata.resourceVersion")
	if before != after {
		t.Errorf("objects changed across kill -9:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

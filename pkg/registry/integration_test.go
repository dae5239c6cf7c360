package registry_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-org/skiff/internal/testcluster"
)

// TestThroughAPIServer drives the strategies through the real API server and
// the kubectl on PATH: defaults show up on stored objects, bad manifests are
// refused with Kubernetes' wording, and `kubectl get` prints our columns.
func TestThroughAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("no kubectl on PATH")
	}
	c := testcluster.Start(t, testcluster.Options{})
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	manifest := `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.25", ports: [{containerPort: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, nodePort: 30080}]
`
	dir := t.TempDir()
	path := filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run("", "apply", "-f", path); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	// Defaulting is idempotent, so a second apply changes nothing.
	if out, err := run("", "apply", "-f", path); err != nil || strings.Count(out, "unchanged") != 2 {
		t.Errorf("second kubectl apply: err %v, output:\n%s", err, out)
	}
	ctx := context.Background()
	d, err := c.Client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.RollingUpdate.MaxSurge.String() != "25%" || d.Spec.Template.Spec.SchedulerName != "default-scheduler" {
		t.Errorf("stored deployment not defaulted: %+v", d.Spec)
	}
	svc, err := c.Client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Ports[0].Protocol != corev1.ProtocolTCP || svc.Spec.Ports[0].TargetPort.IntValue() != 80 || svc.Spec.ExternalTrafficPolicy != "Cluster" {
		t.Errorf("stored service not defaulted: %+v", svc.Spec)
	}

	out, err := run("", "get", "deploy,svc", "-o", "wide")
	if err != nil {
		t.Fatalf("kubectl get: %v\n%s", err, out)
	}
	t.Logf("kubectl get deploy,svc -o wide:\n%s", out)
	for _, want := range []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "CONTAINERS", "nginx:1.25", "app=web",
		"TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "NodePort", "80:30080/TCP"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get -o wide lacks %q:\n%s", want, out)
		}
	}

	bad := strings.Replace(manifest, `image: "nginx:1.25", `, ``, 1)
	bad = strings.Replace(bad, "name: web}\nspec:\n  selector", "name: bad}\nspec:\n  selector", 1)
	out, err = run(bad, "apply", "-f", "-")
	if err == nil || !strings.Contains(out, "spec.template.spec.containers[0].image: Required value") {
		t.Errorf("kubectl apply of a deployment without image: err %v, output:\n%s", err, out)
	}

	out, err = run("", "get", "pods", "--field-selector", "spec.nodeName=nowhere")
	if err != nil || !strings.Contains(out, "No resources found") {
		t.Errorf("kubectl get pods --field-selector: err %v, output:\n%s", err, out)
	}
}

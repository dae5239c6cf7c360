package apiserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/skiff-org/skiff/internal/testcluster"
)

// TestBadInput sends what a careless or hostile client might and checks the
// status codes and Status bodies Kubernetes gives.
func TestBadInput(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	admin, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	do := func(client *http.Client, method, path, ctype string, body []byte) (int, metav1.Status, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, c.URL+path, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var st metav1.Status
		json.Unmarshal(b, &st)
		return resp.StatusCode, st, resp.Header
	}
	cms := "/api/v1/namespaces/default/configmaps"
	if _, err := c.Client.CoreV1().Pods("default").Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		client   *http.Client
		method   string
		path     string
		ctype    string
		body     []byte
		code     int
		reason   metav1.StatusReason
		contains string
	}{
		{"anonymous list", anon, "GET", cms, "", nil, 401, metav1.StatusReasonUnauthorized, "Unauthorized"},
		{"anonymous profile", anon, "GET", "/debug/pprof/heap", "", nil, 401, metav1.StatusReasonUnauthorized, "Unauthorized"},
		{"malformed JSON", admin, "POST", cms, "application/json", []byte(`{"metadata":`), 400, metav1.StatusReasonBadRequest, ""},
		{"malformed YAML", admin, "POST", cms, "application/yaml", []byte("metadata: [\n"), 400, metav1.StatusReasonBadRequest, ""},
		{"empty body", admin, "POST", cms, "application/json", nil, 400, metav1.StatusReasonBadRequest, "unknown format"},
		{"wrong kind", admin, "POST", cms, "application/json", []byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`), 400, metav1.StatusReasonBadRequest, ""},
		{"strict unknown field", admin, "POST", cms + "?fieldValidation=Strict", "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"bogus":1}`), 400, metav1.StatusReasonBadRequest, `unknown field "bogus"`},
		{"oversized", admin, "POST", cms, "application/json", append(append([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"a":"`), bytes.Repeat([]byte("x"), 4<<20)...), []byte(`"}}`)...), 413, metav1.StatusReasonRequestEntityTooLarge, ""},
		{"invalid name", admin, "POST", cms, "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}`), 422, metav1.StatusReasonInvalid, "metadata.name"},
		{"unknown resource", admin, "GET", "/api/v1/namespaces/default/widgets", "", nil, 404, metav1.StatusReasonNotFound, ""},
		{"bad patch type", admin, "PATCH", cms + "/x", "text/plain", []byte(`{}`), 415, metav1.StatusReasonUnsupportedMediaType, ""},
		// The patch library panics comparing a list merge key; the request is at fault.
		{"list as merge key", admin, "PATCH", "/api/v1/namespaces/default/pods/p", "application/strategic-merge-patch+json", []byte(`{"spec":{"containers":[{"name":[]}]}}`), 400, metav1.StatusReasonBadRequest, "strategic merge patch"},
		{"bad label selector", admin, "GET", cms + "?labelSelector=a%3D%3D%3Db", "", nil, 400, metav1.StatusReasonBadRequest, ""},
	}
	for _, tt := range tests {
		code, st, _ := do(tt.client, tt.method, tt.path, tt.ctype, tt.body)
		if code != tt.code || st.Reason != tt.reason || st.Kind != "Status" || !strings.Contains(st.Message, tt.contains) {
			t.Errorf("%s: %d %q %q (kind %q), want %d %q containing %q", tt.name, code, st.Reason, st.Message, st.Kind, tt.code, tt.reason, tt.contains)
		}
	}
	for _, p := range []string{"/readyz", "/livez", "/healthz", "/version"} {
		if code, _, _ := do(anon, "GET", p, "", nil); code != 200 {
			t.Errorf("anonymous GET %s = %d, want 200", p, code)
		}
	}
	// Unknown fields are warnings unless Strict.
	_, _, h := do(admin, "POST", cms, "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"warned"},"bogus":1}`))
	if w := h.Get("Warning"); !strings.Contains(w, `unknown field \"bogus\"`) {
		t.Errorf("Warning header = %q", w)
	}

	// Invalid objects: one cause per bad field.
	_, err = c.Client.CoreV1().Services("default").Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "s"},
		Spec:       corev1.ServiceSpec{Type: "Bogus", Ports: []corev1.ServicePort{{Port: 70000}}},
	}, metav1.CreateOptions{})
	se, ok := err.(*apierrors.StatusError)
	if !ok || se.ErrStatus.Code != 422 || se.ErrStatus.Details == nil || len(se.ErrStatus.Details.Causes) < 2 {
		t.Fatalf("invalid service = %v, want 422 with a cause per field", err)
	}
	fields := map[string]bool{}
	for _, c := range se.ErrStatus.Details.Causes {
		fields[c.Field] = true
	}
	if !fields["spec.type"] || !fields["spec.ports[0].port"] {
		t.Errorf("causes = %+v, want spec.type and spec.ports[0].port", se.ErrStatus.Details.Causes)
	}
}

// TestDeletion covers finalizers, propagation policies and namespaces.
func TestDeletion(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := context.Background()
	cms := c.Client.CoreV1().ConfigMaps("default")
	cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "held", Finalizers: []string{"example.com/hold"}}}, metav1.CreateOptions{})
	if err := cms.Delete(ctx, "held", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := cms.Get(ctx, "held", metav1.GetOptions{})
	if err != nil || got.DeletionTimestamp == nil {
		t.Fatalf("object with a finalizer: %v, deletionTimestamp %v; want it kept and marked", err, got)
	}
	got.Finalizers = nil
	if _, err := cms.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "held", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after the last finalizer: %v, want NotFound", err)
	}
	for policy, fin := range map[metav1.DeletionPropagation]string{metav1.DeletePropagationForeground: "foregroundDeletion", metav1.DeletePropagationOrphan: "orphan"} {
		name := strings.ToLower(string(policy))
		cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		cms.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &policy})
		got, err := cms.Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(got.Finalizers) != 1 || got.Finalizers[0] != fin {
			t.Errorf("delete with %s: %v finalizers %v, want [%s] for the garbage collector", policy, err, got.Finalizers, fin)
		}
	}
	// Dry run changes nothing.
	cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dry"}}, metav1.CreateOptions{})
	if err := cms.Delete(ctx, "dry", metav1.DeleteOptions{DryRun: []string{"All"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "dry", metav1.GetOptions{}); err != nil {
		t.Errorf("dry-run delete removed the object: %v", err)
	}
	// Deletecollection by label.
	for _, n := range []string{"l1", "l2"} {
		cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: map[string]string{"batch": "x"}}}, metav1.CreateOptions{})
	}
	if err := cms.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "batch=x"}); err != nil {
		t.Fatal(err)
	}
	if l, _ := cms.List(ctx, metav1.ListOptions{LabelSelector: "batch=x"}); len(l.Items) != 0 {
		t.Errorf("deletecollection left %d", len(l.Items))
	}
	// A terminating namespace takes no new objects.
	nss := c.Client.CoreV1().Namespaces()
	nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "going"}}, metav1.CreateOptions{})
	if err := nss.Delete(ctx, "going", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, _ := nss.Get(ctx, "going", metav1.GetOptions{})
	if ns.Status.Phase != corev1.NamespaceTerminating {
		t.Errorf("deleted namespace phase = %q, want Terminating", ns.Status.Phase)
	}
	_, err = c.Client.CoreV1().ConfigMaps("going").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "being terminated") {
		t.Errorf("create in terminating namespace = %v, want Forbidden", err)
	}
	// The namespace controller's finalize call releases it.
	ns.Spec.Finalizers = nil
	if _, err := nss.Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := nss.Get(ctx, "going", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("finalized namespace: %v, want NotFound", err)
	}
}

// TestProfiling checks that an authenticated client gets the runtime's
// profiles, as with Kubernetes' default --profiling.
func TestProfiling(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	admin, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/debug/pprof/":                  "goroutine",
		"/debug/pprof/goroutine?debug=1": "goroutine profile: total",
		"/debug/pprof/cmdline":           "",
	} {
		resp, err := admin.Get(c.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %d, body %.200q; want 200 containing %q", path, resp.StatusCode, b, want)
		}
	}
}

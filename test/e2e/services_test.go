package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requestLoop is run by `python3 -c` inside the client pod: GET url n times
// (or for secs seconds when n is 0) and print who answered and how many
// requests failed, as JSON.
const requestLoop = `
import json, sys, time, urllib.request
url, n, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
seen, failed, total, errors = {}, 0, 0, []
end = time.time() + secs
while (n and total < n) or (not n and time.time() < end):
    total += 1
    try:
        host = urllib.request.urlopen(url, timeout=2).read().decode()
        seen[host] = seen.get(host, 0) + 1
    except Exception as e:
        failed += 1
        errors.append(str(e))
    if not n:
        time.sleep(0.02)
print(json.dumps({"seen": seen, "failed": failed, "total": total, "errors": errors[:5]}))
`

type loopResult struct {
	Seen   map[string]int
	Failed int
	Total  int
	Errors []string
}

func (s *server) requests(t *testing.T, url string, n int, secs float64) loopResult {
	t.Helper()
	out := s.must(t, "kubectl", "exec", "client", "--", "python3", "-c", requestLoop, url, itoa(n), ftoa(secs))
	var r loopResult
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
		t.Fatalf("request loop output %q: %v", out, err)
	}
	return r
}

// TestServices: a Service spreads requests over the ready pods, by DNS name
// from another pod and by NodePort from the node; unready pods leave the
// rotation, no endpoints fail fast, and a rolling update drops nothing.
func TestServices(t *testing.T) {
	s := startNode(t)
	k := "kubectl"
	s.must(t, k, "wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
	s.must(t, k, "apply", "-f", "testdata/echo.yaml")
	s.must(t, k, "rollout", "status", "deploy/echo", "--timeout=90s")
	s.must(t, k, "wait", "--for=condition=Ready", "pod/client", "--timeout=60s")

	r := s.requests(t, "http://echo.default.svc.cluster.local/", 300, 0)
	if r.Failed != 0 || r.Total != 300 || len(r.Seen) != 3 {
		t.Fatalf("300 requests by DNS name: %+v; want all answered by 3 pods", r)
	}
	for host, n := range r.Seen {
		if n < 30 {
			t.Errorf("pod %s answered %d of 300: not spread", host, n)
		}
	}
	if r := s.requests(t, "http://echo/", 20, 0); r.Failed != 0 {
		t.Errorf("short name through the search path: %+v", r)
	}

	// In-cluster clients: the pod's service account volume holds a token
	// and the CA that reach the API server through the kubernetes Service.
	out, err := s.kubectl(t, k, "", "exec", "client", "--", "python3", "-c", inClusterList)
	if err != nil || !strings.Contains(out, "200 pods") {
		t.Errorf("in-cluster API call with the mounted token: %q, %v", out, err)
	}

	// The NodePort answers on the node.
	port := s.must(t, k, "get", "svc", "echo", "-o", "jsonpath={.spec.ports[0].nodePort}")
	if out, err := s.inNode("curl", "-sS", "--max-time", "3", "http://192.168.77.2:"+port+"/"); err != nil || !strings.HasPrefix(out, "echo-") {
		t.Errorf("NodePort %s = %q, %v", port, out, err)
	}

	// A pod whose readiness probe fails leaves the rotation within 2 s.
	pods := s.pods(t, k, "app=echo")
	victim := pods.Items[0].Metadata.Name
	s.must(t, k, "exec", victim, "--", "touch", "/state/unready")
	start := time.Now()
	eventually(t, "unready pod out of the endpoints", 10*time.Second, func() (bool, string) {
		out := s.must(t, k, "get", "endpointslices", "-l", "kubernetes.io/service-name=echo", "-o", "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].targetRef.name}")
		return !strings.Contains(out, victim), out
	})
	t.Logf("unready pod left the endpoints after %v", time.Since(start))
	time.Sleep(300 * time.Millisecond) // the proxy's sync
	if r := s.requests(t, "http://echo/", 60, 0); r.Seen[victim] != 0 || r.Failed != 0 {
		t.Errorf("after readiness failed, %s still got %d requests (%+v)", victim, r.Seen[victim], r)
	}
	if d := time.Since(start); d > 2*time.Second+3*time.Second { // probe period + our polling and exec overheads
		t.Logf("note: removal measured at %v including kubectl round trips", d)
	}
	s.must(t, k, "exec", victim, "--", "rm", "/state/unready")

	// A rolling update while a client sends requests in a loop: none fails.
	loop := exec.Command("nsenter", "--net="+s.netns, k, "--kubeconfig", s.kubeconfig, "exec", "client", "--", "python3", "-c", requestLoop, "http://echo/", "0", "40")
	var loopOut syncBuffer
	loop.Stdout, loop.Stderr = &loopOut, &loopOut
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	s.must(t, k, "set", "env", "deploy/echo", "VERSION=2")
	s.must(t, k, "rollout", "status", "deploy/echo", "--timeout=90s")
	if err := loop.Wait(); err != nil {
		t.Fatalf("request loop: %v\n%s", err, loopOut.String())
	}
	var lr loopResult
	out = loopOut.String()
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &lr); err != nil {
		t.Fatalf("loop output %q: %v", out, err)
	}
	if lr.Failed != 0 || lr.Total < 100 {
		t.Errorf("rolling update under load: %d of %d requests failed: %v", lr.Failed, lr.Total, lr.Errors)
	}
	t.Logf("rolling update under load: %d requests, %d failed, answered by %d pods", lr.Total, lr.Failed, len(lr.Seen))

	// Scaled to zero, connections fail fast instead of hanging.
	s.must(t, k, "scale", "deploy/echo", "--replicas=0")
	eventually(t, "no echo pods", 60*time.Second, func() (bool, string) {
		l := s.pods(t, k, "app=echo")
		return len(l.Items) == 0, itoa(len(l.Items))
	})
	time.Sleep(500 * time.Millisecond)
	begin := time.Now()
	r = s.requests(t, "http://echo/", 5, 0)
	if r.Failed != 5 || time.Since(begin) > 8*time.Second {
		t.Errorf("no endpoints: %+v in %v; want 5 fast failures", r, time.Since(begin))
	}
	for _, e := range r.Errors {
		if !strings.Contains(e, "refused") {
			t.Errorf("no endpoints: error %q, want connection refused", e)
		}
	}
}

// inClusterList lists its namespace's pods as client-go's InClusterConfig
// would: token, CA and namespace from the service account mount, the API at
// https://kubernetes.default.svc.
const inClusterList = `
import json, ssl, urllib.request
d = "/var/run/secrets/kubernetes.io/serviceaccount/"
tok, ns = open(d + "token").read(), open(d + "namespace").read()
ctx = ssl.create_default_context(cafile=d + "ca.crt")
req = urllib.request.Request("https://kubernetes.default.svc/api/v1/namespaces/" + ns + "/pods", headers={"Authorization": "Bearer " + tok})
with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
    print(r.status, json.load(r)["kind"] == "PodList" and "pods")
`

func itoa(n int) string { return strings.TrimSpace(strings.Replace(jsonNum(float64(n)), ".0", "", 1)) }

func ftoa(f float64) string { return jsonNum(f) }

func jsonNum(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

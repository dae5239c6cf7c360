package apiserver_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/skiff-org/skiff/internal/testcluster"
)

// seeds are valid objects of the served kinds; TestMutatedBodies breaks them.
var seeds = map[string]string{
	"/api/v1/namespaces/default/pods": `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"b"}},
		"spec":{"containers":[{"name":"c","image":"busybox","command":["sleep","1"],"ports":[{"containerPort":80}],
		"resources":{"limits":{"cpu":"1","memory":"1Gi"}},"env":[{"name":"A","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],
		"livenessProbe":{"httpGet":{"path":"/","port":80}},"volumeMounts":[{"name":"v","mountPath":"/v"}]}],
		"volumes":[{"name":"v","emptyDir":{}}],"tolerations":[{"key":"k","operator":"Exists","effect":"NoExecute","tolerationSeconds":5}],
		"affinity":{"podAntiAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"topologyKey":"kubernetes.io/hostname","labelSelector":{"matchLabels":{"a":"b"}}}]}}}}`,
	"/apis/apps/v1/namespaces/default/deployments": `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
		"spec":{"replicas":2,"selector":{"matchLabels":{"a":"b"}},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":1}},
		"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}`,
	"/apis/apps/v1/namespaces/default/replicasets": `{"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"r"},
		"spec":{"replicas":1,"selector":{"matchExpressions":[{"key":"a","operator":"In","values":["b"]}]},
		"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}`,
	"/api/v1/namespaces/default/services": `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},
		"spec":{"type":"NodePort","selector":{"a":"b"},"ports":[{"name":"http","port":80,"targetPort":"http","nodePort":30080}],
		"sessionAffinity":"ClientIP","externalIPs":["192.0.2.1"]}}`,
	"/api/v1/namespaces/default/configmaps": `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"},"binaryData":{"b":"AAE="}}`,
	"/api/v1/namespaces/default/secrets":    `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"},"type":"Opaque","stringData":{"k":"v"}}`,
	"/api/v1/namespaces/default/endpoints": `{"apiVersion":"v1","kind":"Endpoints","metadata":{"name":"e"},
		"subsets":[{"addresses":[{"ip":"10.42.0.5","targetRef":{"kind":"Pod","name":"p"}}],"ports":[{"port":80}]}]}`,
	"/apis/discovery.k8s.io/v1/namespaces/default/endpointslices": `{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{"name":"e"},
		"addressType":"IPv4","endpoints":[{"addresses":["10.42.0.5"],"conditions":{"ready":true}}],"ports":[{"port":80,"protocol":"TCP"}]}`,
	"/api/v1/nodes":      `{"apiVersion":"v1","kind":"Node","metadata":{"name":"n"},"spec":{"podCIDR":"10.42.9.0/24","taints":[{"key":"k","effect":"NoSchedule"}]}}`,
	"/api/v1/namespaces": `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"ns-x"}}`,
	"/apis/coordination.k8s.io/v1/namespaces/default/leases": `{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l"},
		"spec":{"holderIdentity":"h","leaseDurationSeconds":10,"renewTime":"2026-01-01T00:00:00.000000Z"}}`,
	"/api/v1/namespaces/default/replicationcontrollers": `{"apiVersion":"v1","kind":"ReplicationController","metadata":{"name":"rc"},
		"spec":{"replicas":1,"selector":{"a":"b"},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}`,
	"/api/v1/namespaces/default/events": `{"apiVersion":"v1","kind":"Event","metadata":{"name":"ev"},"involvedObject":{"kind":"Pod","name":"p","namespace":"default"},
		"reason":"R","message":"m","type":"Normal","count":1}`,
	"/api/v1/namespaces/default/serviceaccounts": `{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"sa"}}`,
}

// subresources names one subresource per seed path to hit with the broken
// objects too (scale takes the owner's body and must refuse it cleanly).
var subresources = map[string]string{
	"/api/v1/namespaces/default/pods":                   "status",
	"/apis/apps/v1/namespaces/default/deployments":      "scale",
	"/apis/apps/v1/namespaces/default/replicasets":      "status",
	"/api/v1/namespaces/default/services":               "status",
	"/api/v1/nodes":                                     "status",
	"/api/v1/namespaces":                                "finalize",
	"/api/v1/namespaces/default/replicationcontrollers": "scale",
}

// oddValues replace a value somewhere in a seed: wrong types, extremes,
// empties and nulls.
var oddValues = []any{nil, "", "x", -1, 0, 1 << 40, -1 << 40, 3.5, true, false, []any{}, []any{nil}, map[string]any{},
	map[string]any{"": nil}, "-", "999999999999999999999", "1e400", "10.42.0.999", "::", "%", "/", "../..", "a\x00b",
	string(bytes.Repeat([]byte("z"), 300))}

// mutate returns a copy of v with one value replaced or removed.
func mutate(r *rand.Rand, v any) any {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 || r.IntN(6) == 0 {
			return oddValues[r.IntN(len(oddValues))]
		}
		out := make(map[string]any, len(x))
		keys := make([]string, 0, len(x))
		for k, val := range x {
			out[k] = val
			keys = append(keys, k)
		}
		k := keys[r.IntN(len(keys))]
		switch r.IntN(5) {
		case 0:
			delete(out, k)
		case 1:
			out[k] = oddValues[r.IntN(len(oddValues))]
		default:
			out[k] = mutate(r, x[k])
		}
		return out
	case []any:
		if len(x) == 0 || r.IntN(6) == 0 {
			return oddValues[r.IntN(len(oddValues))]
		}
		out := append([]any(nil), x...)
		i := r.IntN(len(out))
		if r.IntN(4) == 0 {
			out = append(out, out[i]) // duplicates: names, ports
		} else {
			out[i] = mutate(r, x[i])
		}
		return out
	default:
		return oddValues[r.IntN(len(oddValues))]
	}
}

// mutationSeed picks the random sequence; CI runs the default one so that a
// failure repeats, and `go test -run TestMutatedBodies -mutation.seed N
// -mutation.rounds 1000` explores others.
var (
	mutationSeed   = flag.Uint64("mutation.seed", 1, "seed of TestMutatedBodies' random mutations")
	mutationRounds = flag.Int("mutation.rounds", 150, "mutations per kind in TestMutatedBodies")
)

// TestMutatedBodies creates and updates objects of every kind from valid
// seeds with random values broken: whatever the server answers, it must not
// be a server error (a 5xx means a panic or an unhandled case).
func TestMutatedBodies(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	client, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	rounds := *mutationRounds
	if testing.Short() {
		rounds = 20
	}
	r := rand.New(rand.NewPCG(*mutationSeed, 2))
	codes := map[int]int{}
	send := func(method, url, ctype string, body []byte) int {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 {
			t.Errorf("seed %d: "+"%s %s = %d %s\nbody sent: %s", *mutationSeed, method, url, resp.StatusCode, b, body)
		}
		codes[resp.StatusCode]++
		return resp.StatusCode
	}
	for _, path := range slices.Sorted(maps.Keys(seeds)) {
		seed := seeds[path]
		var obj map[string]any
		if err := json.Unmarshal([]byte(seed), &obj); err != nil {
			t.Fatalf("seed for %s: %v", path, err)
		}
		// The valid seed exists, so that updates have something to hit.
		if code := send("POST", c.URL+path, "application/json", []byte(seed)); code != 201 {
			t.Fatalf("POST valid seed to %s = %d", path, code)
		}
		name := obj["metadata"].(map[string]any)["name"].(string)
		for i := range rounds {
			m := mutate(r, obj)
			if mm, ok := m.(map[string]any); ok && i%2 == 1 {
				// Keep the name on half of them, so they reach the update path.
				if md, ok := mm["metadata"].(map[string]any); ok {
					md["name"] = name
				}
			}
			body, err := json.Marshal(m)
			if err != nil {
				continue
			}
			item := fmt.Sprintf("%s%s/%s", c.URL, path, name)
			send("POST", c.URL+path, "application/json", body)
			send("PUT", item, "application/json", body)
			// The broken object as a patch, of each kind that takes one.
			send("PATCH", item, []string{"application/merge-patch+json", "application/strategic-merge-patch+json"}[i%2], body)
			if sub := subresources[path]; sub != "" {
				send("PUT", item+"/"+sub, "application/json", body)
			}
			if i%10 == 0 {
				send("PATCH", item+"?fieldManager=fuzz&force=true", "application/apply-patch+yaml", body)
			}
		}
	}
	t.Logf("status codes: %v", codes)
}

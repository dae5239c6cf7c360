package process

import (
	"os"
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestHostnameEnv checks that containers get HOSTNAME as container runtimes
// set it: the pod's hostname, or the node's with host networking, unless the
// container sets its own.
func TestHostnameEnv(t *testing.T) {
	nodeName, _ := os.Hostname()
	pod := func(hostname string) *runtimeapi.PodSandboxConfig {
		return &runtimeapi.PodSandboxConfig{Hostname: hostname, Metadata: &runtimeapi.PodSandboxMetadata{Name: "web-1"}}
	}
	tests := []struct {
		name    string
		sandbox *sandboxMeta
		env     []*runtimeapi.KeyValue
		want    string
	}{
		{"pod name", &sandboxMeta{config: pod("")}, nil, "HOSTNAME=web-1"},
		{"spec.hostname", &sandboxMeta{config: pod("db-0")}, nil, "HOSTNAME=db-0"},
		{"host network", &sandboxMeta{HostNetwork: true, config: pod("")}, nil, "HOSTNAME=" + nodeName},
		{"user's own wins", &sandboxMeta{config: pod("")}, []*runtimeapi.KeyValue{{Key: "HOSTNAME", Value: []byte("mine")}}, "HOSTNAME=mine"},
	}
	r := &Runtime{}
	for _, tt := range tests {
		c := &containerMeta{config: &runtimeapi.ContainerConfig{Envs: tt.env}}
		spec := r.shimSpecFor(c, tt.sandbox, []string{"true"})
		var got []string
		for _, kv := range spec.Env {
			if len(kv) >= 9 && kv[:9] == "HOSTNAME=" {
				got = append(got, kv)
			}
		}
		if !slices.Equal(got, []string{tt.want}) {
			t.Errorf("%s: HOSTNAME entries %v, want [%s]", tt.name, got, tt.want)
		}
	}
}

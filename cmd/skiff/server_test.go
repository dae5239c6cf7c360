package main

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/skiff-org/skiff/pkg/preflight"
	"github.com/skiff-org/skiff/pkg/server"
)

func parseServerFlags(t *testing.T, args ...string) (server.Config, error) {
	t.Helper()
	var sf serverFlags
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addServerFlags(fs, &sf)
	if err := fs.Parse(args); err != nil {
		return server.Config{}, err
	}
	return sf.config(fs, io.Discard)
}

func TestServerFlags(t *testing.T) {
	d := server.Defaults()
	tests := []struct {
		args    []string
		check   func(server.Config) bool
		wantErr string
	}{
		{args: nil, check: func(c server.Config) bool {
			return c.DataDir == d.DataDir && c.HTTPSPort == d.HTTPSPort && c.ServiceCIDR == d.ServiceCIDR &&
				c.DefaultTolerationSeconds == d.DefaultTolerationSeconds && c.NodeMonitorGracePeriod == d.NodeMonitorGracePeriod &&
				c.Log != nil && len(c.EtcdServers) == 0 && !c.DisableAgent
		}},
		{args: []string{"--data-dir", "/tmp/x", "--https-port", "7443", "--disable-agent", "--leader-elect", "--write-kubeconfig", "/root/.kube/config"},
			check: func(c server.Config) bool {
				return c.DataDir == "/tmp/x" && c.HTTPSPort == 7443 && c.DisableAgent && c.LeaderElect && c.WriteKubeconfig == "/root/.kube/config"
			}},
		{args: []string{"--etcd-servers", "https://10.0.0.1:2379,https://10.0.0.2:2379"},
			check: func(c server.Config) bool {
				return len(c.EtcdServers) == 2 && c.EtcdServers[1] == "https://10.0.0.2:2379"
			}},
		{args: []string{"--node-monitor-grace-period", "5s"}, check: func(c server.Config) bool { return c.NodeMonitorGracePeriod == 5*time.Second }},
		{args: []string{"--default-not-ready-toleration-seconds", "30"}, check: func(c server.Config) bool { return c.DefaultTolerationSeconds == 30 }},
		{args: []string{"--default-unreachable-toleration-seconds", "20"}, check: func(c server.Config) bool { return c.DefaultTolerationSeconds == 20 }},
		{args: []string{"--default-not-ready-toleration-seconds", "20", "--default-unreachable-toleration-seconds", "20"},
			check: func(c server.Config) bool { return c.DefaultTolerationSeconds == 20 }},
		{args: []string{"--default-not-ready-toleration-seconds", "20", "--default-unreachable-toleration-seconds", "30"}, wantErr: "must be equal"},
		{args: []string{"--https-port", "70000"}, wantErr: "--https-port 70000"},
		{args: []string{"--service-cluster-ip-range", "10.43.0.0"}, wantErr: "--service-cluster-ip-range"},
		{args: []string{"--cluster-dns", "dns"}, wantErr: "--cluster-dns"},
		{args: []string{"--service-node-port-range", "32767-30000"}, wantErr: "--service-node-port-range"},
		{args: []string{"--etcd-servers", "10.0.0.1:2379"}, wantErr: "--etcd-servers"},
		{args: []string{"--log-level", "loud"}, wantErr: "--log-level"},
		{args: []string{"--proxy-backend", "ipvs"}, wantErr: `--proxy-backend: unknown proxy backend "ipvs"`},
		{args: []string{"--proxy-backend", "legacy"}, check: func(c server.Config) bool { return c.ProxyBackend == "legacy" }},
	}
	for _, tt := range tests {
		c, err := parseServerFlags(t, tt.args...)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("config(%v) = %v, want error containing %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !tt.check(c) {
			t.Errorf("config(%v) = %+v, %v, want it to pass its check", tt.args, c, err)
		}
	}
}

func TestPreflightOptions(t *testing.T) {
	c, err := parseServerFlags(t, "--https-port", "7443", "--etcd-servers", "https://e:2379", "--disable-agent")
	if err != nil {
		t.Fatal(err)
	}
	o := preflightOptions(c)
	if o.Agent || len(o.Ports) != 1 || o.Ports[0].Port != 7443 || o.Ports[0].Flag != "--https-port" {
		t.Errorf("preflightOptions(external etcd, no agent) = %+v, want only port 7443 and no agent checks", o)
	}
	c, err = parseServerFlags(t)
	if err != nil {
		t.Fatal(err)
	}
	o = preflightOptions(c)
	var ports []int
	for _, p := range o.Ports {
		ports = append(ports, p.Port)
	}
	if !o.Agent || !slices.Equal(ports, []int{6443, 2379, 2380, 10250}) || o.Ports[3].Flag != "--disable-agent" {
		t.Errorf("preflightOptions(defaults) = %+v, want agent checks and ports 6443 2379 2380 10250", o)
	}
}

func TestPrintChecks(t *testing.T) {
	var out bytes.Buffer
	err := printChecks(&out, []preflight.Result{
		{Check: "port-6443", Severity: preflight.Error, Message: "port 6443 (API server) is in use by another process", Fix: "stop it or pass --https-port"},
		{Check: "cpu", Severity: preflight.OK, Message: "2 CPUs"},
	})
	if !errors.Is(err, errBlocked) {
		t.Errorf("printChecks(with an error) = %v, want %v", err, errBlocked)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], "; stop it or pass --https-port") || lines[2] != "2 checks: 1 errors, 0 warnings" {
		t.Errorf("printChecks() printed %q", out.String())
	}
	if err := printChecks(io.Discard, []preflight.Result{{Check: "cpu", Severity: preflight.Warning}}); err != nil {
		t.Errorf("printChecks(only a warning) = %v, want nil", err)
	}
}

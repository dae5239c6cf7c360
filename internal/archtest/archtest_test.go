package archtest

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestRepository applies the rules to skiff itself.
func TestRepository(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root, mod, err := ModuleRoot(wd)
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(pkgs, func(p Package) bool { return p.Dir == "internal/archtest" && p.HasDoc }) {
		t.Fatalf("Load(%s) did not find internal/archtest with its doc comment; found %d packages", root, len(pkgs))
	}
	for _, v := range Check(mod, pkgs) {
		t.Error(v)
	}
}

const mod = "github.com/skiff-org/skiff"

func TestRules(t *testing.T) {
	tests := []struct {
		name string
		pkgs []Package
		want []string // substrings, one per expected violation, in order
	}{
		{
			name: "clean",
			pkgs: []Package{
				{Dir: "pkg/storage", Name: "storage", HasDoc: true, Imports: []string{"go.etcd.io/etcd/client/v3"}},
				{Dir: "pkg/storage/etcd3", Name: "etcd3", HasDoc: true, Imports: []string{"go.etcd.io/etcd/client/v3"}},
				{Dir: "pkg/kubelet", Name: "kubelet", HasDoc: true, Imports: []string{"k8s.io/client-go/kubernetes", mod + "/pkg/pki"}},
				{Dir: "pkg/pki", Name: "pki", HasDoc: true, Imports: []string{"go.etcd.io/etcd/client/pkg/v3/transport"}},
				{Dir: "pkg/apiserver", Name: "apiserver", HasDoc: true, Imports: []string{mod + "/pkg/storage"}},
			},
		},
		{
			name: "missing doc",
			pkgs: []Package{{Dir: "pkg/proxy", Name: "proxy"}, {Dir: "docs", Name: ""}},
			want: []string{"pkg/proxy: package proxy has no doc comment"},
		},
		{
			name: "forbidden imports, tests too, but not look-alikes",
			pkgs: []Package{
				{Dir: "pkg/a", Name: "a", HasDoc: true, Imports: []string{"k8s.io/kubernetes/pkg/apis/core"}},
				{Dir: "pkg/b", Name: "b", HasDoc: true, TestImport: []string{"k8s.io/apiserver"}},
				{Dir: "pkg/c", Name: "c", HasDoc: true, Imports: []string{"k8s.io/kubelet-lookalike", "k8s.io/api/core/v1"}},
			},
			want: []string{"pkg/a imports k8s.io/kubernetes/pkg/apis/core", "pkg/b imports k8s.io/apiserver"},
		},
		{
			name: "etcd client outside storage",
			pkgs: []Package{
				{Dir: "pkg/storagex", Name: "storagex", HasDoc: true, Imports: []string{"go.etcd.io/etcd/client/v3"}},
				{Dir: "pkg/server", Name: "server", HasDoc: true, TestImport: []string{"go.etcd.io/etcd/client/v3/concurrency"}},
			},
			want: []string{"pkg/storagex imports go.etcd.io/etcd/client/v3", "pkg/server imports go.etcd.io/etcd/client/v3/concurrency"},
		},
		{
			name: "kubelet reaches apiserver through another package",
			pkgs: []Package{
				{Dir: "pkg/kubelet/stream", Name: "stream", HasDoc: true, Imports: []string{mod + "/pkg/util"}},
				{Dir: "pkg/util", Name: "util", HasDoc: true, Imports: []string{mod + "/pkg/apiserver/handlers"}},
				{Dir: "pkg/apiserver/handlers", Name: "handlers", HasDoc: true},
			},
			want: []string{"pkg/kubelet/stream -> pkg/util -> pkg/apiserver/handlers"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Check(mod, tt.pkgs)
			if len(got) != len(tt.want) {
				t.Fatalf("Check() = %q, want %d violations like %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("Check()[%d] = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestLoadSkipsTestdataAndReadsTests(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"go.mod":                    "module example.com/m\n", // no Go files at the root: no package
		"a/a.go":                    "// Package a is a.\npackage a\n\nimport \"example.com/m/b\"\n",
		"a/a_test.go":               "package a\n\nimport \"k8s.io/apiserver/pkg/x\"\n",
		"b/b.go":                    "package b\n",
		"a/testdata/bad.go":         "this is not go",
		"nested/go.mod":             "module example.com/other\n",
		"nested/n.go":               "package n\n",
		".hidden/h.go":              "package h\n",
		"cmd/tool/main.go":          "// Command tool does things.\npackage main\n",
		"cmd/tool/doc_only_test.go": "package main\n",
	}
	for p, c := range files {
		full := root + "/" + p
		os.MkdirAll(full[:strings.LastIndex(full, "/")], 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pkgs, err := Load(root)
	if err != nil {
		t.Fatalf("Load() = %v", err)
	}
	var dirs []string
	for _, p := range pkgs {
		dirs = append(dirs, p.Dir)
	}
	if want := []string{"a", "b", "cmd/tool"}; !slices.Equal(dirs, want) {
		t.Fatalf("Load() dirs = %v, want %v", dirs, want)
	}
	a := pkgs[0]
	if !a.HasDoc || !slices.Equal(a.Imports, []string{"example.com/m/b"}) || !slices.Equal(a.TestImport, []string{"k8s.io/apiserver/pkg/x"}) {
		t.Errorf("Load() a = %+v, want doc, import of b, test import of k8s.io/apiserver", a)
	}
	got := Check("example.com/m", pkgs)
	want := []string{"b: package b has no doc comment", "a imports k8s.io/apiserver/pkg/x"}
	if len(got) != len(want) {
		t.Fatalf("Check() = %q, want %q", got, want)
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("Check()[%d] = %q, want it to contain %q", i, got[i], want[i])
		}
	}
}

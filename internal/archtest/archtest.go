// Package archtest guards skiff's architecture with tests: every package has a
// doc comment, only pkg/storage talks to etcd through its client, the kubelet
// never depends on the API server's code, and nothing imports the Kubernetes
// components skiff replaces.
//
// The rules read the source with go/parser rather than `go list`, so they run
// in milliseconds and still report on a tree that does not compile.
package archtest

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Package is what the rules need to know about one directory of Go code.
type Package struct {
	Dir        string   // slash-separated, relative to the module root
	Name       string   // package name of the non-test files
	HasDoc     bool     // some non-test file has a package doc comment
	Imports    []string // of non-test files, sorted, deduplicated
	TestImport []string // of _test.go files only
}

// Forbidden are module paths skiff must never import: they are the system
// skiff builds, not libraries for it.
var Forbidden = []string{
	"k8s.io/kubernetes",
	"k8s.io/apiserver",
	"k8s.io/kubelet",
	"k8s.io/kube-scheduler",
	"k8s.io/controller-manager",
	"k8s.io/kube-controller-manager",
	"k8s.io/kube-proxy",
	"github.com/k3s-io",
	"github.com/rancher/k3s",
	"github.com/rancher/kine",
}

// etcdClient is the import path prefix of etcd's client (v2 and v3).
const etcdClient = "go.etcd.io/etcd/client/v"

// Load parses every package under root (a module root) except testdata,
// vendor and hidden directories.
func Load(root string) ([]Package, error) {
	byDir := map[string]*Package{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if p != root {
				if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
					return filepath.SkipDir // a nested module is not ours to judge
				}
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return fmt.Errorf("archtest: %w", err)
		}
		rel, err := filepath.Rel(root, filepath.Dir(p))
		if err != nil {
			return err
		}
		dir := filepath.ToSlash(rel)
		pkg := byDir[dir]
		if pkg == nil {
			pkg = &Package{Dir: dir}
			byDir[dir] = pkg
		}
		var imports []string
		for _, imp := range f.Imports {
			imports = append(imports, strings.Trim(imp.Path.Value, "`\""))
		}
		if strings.HasSuffix(name, "_test.go") {
			pkg.TestImport = append(pkg.TestImport, imports...)
			return nil
		}
		pkg.Name = f.Name.Name
		pkg.Imports = append(pkg.Imports, imports...)
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			pkg.HasDoc = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Package
	for _, p := range byDir {
		p.Imports = uniq(p.Imports)
		p.TestImport = uniq(p.TestImport)
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}

func uniq(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// Check applies every rule to pkgs of module modPath and returns one line
// per violation.
func Check(modPath string, pkgs []Package) []string {
	var v []string
	v = append(v, MissingDocs(pkgs)...)
	v = append(v, ForbiddenImports(pkgs)...)
	v = append(v, EtcdClientOutsideStorage(pkgs)...)
	v = append(v, Reaches(modPath, pkgs, "pkg/kubelet", "pkg/apiserver")...)
	return v
}

// MissingDocs lists packages with code but no package doc comment.
func MissingDocs(pkgs []Package) []string {
	var v []string
	for _, p := range pkgs {
		if p.Name != "" && !p.HasDoc {
			v = append(v, fmt.Sprintf("%s: package %s has no doc comment; add \"// Package %s ...\" above the package clause of one file", p.Dir, p.Name, p.Name))
		}
	}
	return v
}

// ForbiddenImports lists imports, tests included, of the Forbidden modules.
func ForbiddenImports(pkgs []Package) []string {
	var v []string
	for _, p := range pkgs {
		for _, imp := range append(slices.Clone(p.Imports), p.TestImport...) {
			for _, f := range Forbidden {
				if imp == f || strings.HasPrefix(imp, f+"/") {
					v = append(v, fmt.Sprintf("%s imports %s: skiff writes its own components instead of importing %s", p.Dir, imp, f))
				}
			}
		}
	}
	return v
}

// EtcdClientOutsideStorage lists packages other than pkg/storage and its
// children that import etcd's client: only storage talks to etcd.
func EtcdClientOutsideStorage(pkgs []Package) []string {
	var v []string
	for _, p := range pkgs {
		if under(p.Dir, "pkg/storage") {
			continue
		}
		for _, imp := range append(slices.Clone(p.Imports), p.TestImport...) {
			if strings.HasPrefix(imp, etcdClient) {
				v = append(v, fmt.Sprintf("%s imports %s: only pkg/storage may talk to etcd; go through the API server", p.Dir, imp))
			}
		}
	}
	return v
}

// Reaches lists the packages under from whose non-test code depends, directly
// or through other packages of this module, on a package under to.
func Reaches(modPath string, pkgs []Package, from, to string) []string {
	deps := map[string][]string{}
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			if rel, ok := strings.CutPrefix(imp, modPath+"/"); ok {
				deps[p.Dir] = append(deps[p.Dir], rel)
			}
		}
	}
	var v []string
	for _, p := range pkgs {
		if !under(p.Dir, from) || p.Name == "" {
			continue
		}
		if chain := pathTo(deps, p.Dir, to); chain != nil {
			v = append(v, fmt.Sprintf("%s depends on %s (%s): the kubelet talks to the API server only through client-go",
				p.Dir, chain[len(chain)-1], strings.Join(chain, " -> ")))
		}
	}
	return v
}

// pathTo finds an import chain from start to a package under target, by
// breadth-first search so the chain reported is a shortest one.
func pathTo(deps map[string][]string, start, target string) []string {
	prev := map[string]string{start: ""}
	queue := []string{start}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		if cur != start && under(cur, target) {
			var chain []string
			for n := cur; n != ""; n = prev[n] {
				chain = append(chain, n)
			}
			slices.Reverse(chain)
			return chain
		}
		for _, d := range deps[cur] {
			if _, seen := prev[d]; !seen {
				prev[d] = cur
				queue = append(queue, d)
			}
		}
	}
	return nil
}

func under(dir, prefix string) bool {
	return dir == prefix || strings.HasPrefix(dir, prefix+"/")
}

// ModuleRoot walks up from dir to the directory holding go.mod and returns it
// with the module path.
func ModuleRoot(dir string) (root, modPath string, err error) {
	for d := dir; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			for line := range strings.Lines(string(data)) {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
					return d, path.Clean(strings.Trim(strings.TrimSpace(rest), `"`)), nil
				}
			}
			return "", "", fmt.Errorf("archtest: %s/go.mod has no module line", d)
		}
		if filepath.Dir(d) == d {
			return "", "", fmt.Errorf("archtest: no go.mod above %s", dir)
		}
	}
}

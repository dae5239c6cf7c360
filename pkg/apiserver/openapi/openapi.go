// Package openapi builds the OpenAPI documents the API server publishes at
// /openapi/v2 (Swagger 2.0) and /openapi/v3 (OpenAPI 3.0, one document per
// group-version), which kubectl reads for explain, for server-side field
// validation support and for patch merge keys.
//
// Kubernetes generates its definitions from Go comments at build time; skiff
// derives them at start-up by reflection over the k8s.io/api types: json tags
// give properties and required fields, SwaggerDoc methods give descriptions,
// patchStrategy/patchMergeKey tags give the patch extensions, and client-go's
// structured-merge-diff schema gives list and map types. Documents are built
// once by New and served from memory.
package openapi

import (
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-org/skiff/pkg/registry"
)

var (
	// ErrResource means a Resource cannot be described (no New or NewList,
	// or they do not return pointers to structs).
	ErrResource = errors.New("openapi: resource cannot be described")
	// ErrListTypes means client-go's merge schema could not be read.
	ErrListTypes = errors.New("openapi: reading list types")
)

// Documents are the OpenAPI documents of one set of resources, ready to
// serve. They are immutable after New.
type Documents struct {
	v2    *document
	index *document
	v3    map[string]*document // by group path: "api/v1", "apis/apps/v1"
}

// document is one served document: its JSON, the hash that names it, and
// its protobuf and gzip forms, made on first request since fewer clients ask
// for them.
type document struct {
	json []byte
	hash string // upper-case hex SHA-512 of json, as Kubernetes computes it
	v3   bool

	pb           lazyBytes // protobuf form
	gzJSON, gzPB lazyBytes // gzip forms, for clients that accept them
}

// lazyBytes is a byte form of a document computed once, on first use.
type lazyBytes struct {
	once sync.Once
	data []byte
	err  error
}

func (l *lazyBytes) get(make func() ([]byte, error)) ([]byte, error) {
	l.once.Do(func() { l.data, l.err = make() })
	return l.data, l.err
}

func newDocument(v any, v3 bool) (*document, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &document{json: data, hash: fmt.Sprintf("%X", sha512.Sum512(data)), v3: v3}, nil
}

// New builds every document for resources; version is the server version
// written in each document's info.
func New(resources []*registry.Resource, version string) (*Documents, error) {
	lists, err := loadListTypes()
	if err != nil {
		return nil, err
	}
	b2, b3 := newBuilder(false, lists), newBuilder(true, lists)

	type served struct {
		r                *registry.Resource
		kindDef, listDef string
	}
	var all []served
	byGroup := map[string][]served{}
	groupVersions := map[string]gvk{}
	for _, r := range resources {
		kt, lt, err := resourceTypes(r)
		if err != nil {
			return nil, err
		}
		s := served{r: r, kindDef: b2.define(kt), listDef: b2.define(lt)}
		b3.define(kt)
		b3.define(lt)
		all = append(all, s)
		gp := groupPath(r.Group, r.Version)
		byGroup[gp] = append(byGroup[gp], s)
		groupVersions[gp] = gvk{Group: r.Group, Version: r.Version}
	}

	// Definitions every document needs, and the extensions that say which
	// kinds they are.
	common := []reflect.Type{
		reflect.TypeFor[metav1.Status](), reflect.TypeFor[metav1.DeleteOptions](),
		reflect.TypeFor[metav1.WatchEvent](), reflect.TypeFor[metav1.Patch](),
		reflect.TypeFor[metav1.APIResourceList](),
		reflect.TypeFor[autoscalingv1.Scale](), reflect.TypeFor[corev1.Binding](),
	}
	for _, t := range common {
		b2.define(t)
		b3.define(t)
	}
	var everyGV []gvk
	for _, gp := range sortedKeys(groupVersions) {
		everyGV = append(everyGV, groupVersions[gp])
	}
	for _, b := range []*builder{b2, b3} {
		for _, s := range all {
			b.addGVK(s.kindDef, gvk{Group: s.r.Group, Version: s.r.Version, Kind: s.r.Kind})
			b.addGVK(s.listDef, gvk{Group: s.r.Group, Version: s.r.Version, Kind: s.r.Kind + "List"})
		}
		for _, gv := range everyGV {
			b.addGVK(defDelete, gvk{Group: gv.Group, Version: gv.Version, Kind: "DeleteOptions"})
			b.addGVK(defWatchEvent, gvk{Group: gv.Group, Version: gv.Version, Kind: "WatchEvent"})
		}
		b.addGVK(defStatus, gvk{Version: "v1", Kind: "Status"})
		b.addGVK(defScale, gvk{Group: "autoscaling", Version: "v1", Kind: "Scale"})
		b.addGVK(defBinding, gvk{Version: "v1", Kind: "Binding"})
	}

	d := &Documents{v3: map[string]*document{}}
	title := info{Title: "Kubernetes", Version: version}

	v2 := swagger{Swagger: "2.0", Info: title, Paths: map[string]*pathItem2{}, Definitions: b2.defs,
		SecurityDefinitions: bearer, Security: security}
	idx := index3{Paths: map[string]indexEntry{}}
	for _, gp := range sortedKeys(byGroup) {
		gv := groupVersions[gp]
		eps := []endpoint{resourcesEndpoint(gv.Group, gv.Version)}
		roots := []string{defStatus, defDelete, defWatchEvent, defPatch, defResources}
		for _, s := range byGroup[gp] {
			eps = append(eps, endpoints(s.r, s.kindDef, s.listDef)...)
			roots = append(roots, s.kindDef, s.listDef)
		}
		for _, ep := range eps {
			for _, op := range ep.ops {
				if op.body != "" {
					roots = append(roots, op.body)
				}
			}
		}
		renderV2(v2.Paths, eps)
		doc := openAPI3{OpenAPI: "3.0.0", Info: title, Paths: map[string]*pathItem3{}, Security: security,
			Components: components3{Schemas: closure(b3.defs, roots, b3.prefix), SecuritySchemes: bearer}}
		renderV3(doc.Paths, eps)
		if d.v3[gp], err = newDocument(doc, true); err != nil {
			return nil, err
		}
		idx.Paths[gp] = indexEntry{ServerRelativeURL: "/openapi/v3/" + gp + "?hash=" + d.v3[gp].hash}
	}
	if d.v2, err = newDocument(v2, false); err != nil {
		return nil, err
	}
	if d.index, err = newDocument(idx, false); err != nil {
		return nil, err
	}
	return d, nil
}

// resourceTypes returns the struct types of r's kind and list.
func resourceTypes(r *registry.Resource) (kind, list reflect.Type, err error) {
	if r.New == nil || r.NewList == nil {
		return nil, nil, fmt.Errorf("%w: %s has no New or NewList", ErrResource, r.GroupVersionResource)
	}
	kind, list = reflect.TypeOf(r.New()), reflect.TypeOf(r.NewList())
	if kind.Kind() != reflect.Pointer || kind.Elem().Kind() != reflect.Struct ||
		list.Kind() != reflect.Pointer || list.Elem().Kind() != reflect.Struct {
		return nil, nil, fmt.Errorf("%w: %s: New and NewList must return pointers to structs", ErrResource, r.GroupVersionResource)
	}
	return kind.Elem(), list.Elem(), nil
}

// addGVK records that definition name is served as kind k.
func (b *builder) addGVK(name string, k gvk) {
	s := b.defs[name]
	if s == nil {
		return
	}
	for _, have := range s.GVK {
		if have == k {
			return
		}
	}
	s.GVK = append(s.GVK, k)
	sort.Slice(s.GVK, func(i, j int) bool {
		a, c := s.GVK[i], s.GVK[j]
		if a.Group != c.Group {
			return a.Group < c.Group
		}
		if a.Version != c.Version {
			return a.Version < c.Version
		}
		return a.Kind < c.Kind
	})
}

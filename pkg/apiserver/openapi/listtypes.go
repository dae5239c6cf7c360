package openapi

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/applyconfigurations"
	smd "sigs.k8s.io/structured-merge-diff/v6/schema"
)

// listTypes holds what Go struct tags cannot say: how lists and maps merge
// (x-kubernetes-list-type, -list-map-keys, -map-type). It is read from the
// structured-merge-diff schema that client-go ships for apply
// configurations, which Kubernetes generates from the same +listType,
// +listMapKey and +mapType markers as its OpenAPI.
type listTypes struct {
	fields       map[string]listInfo // "<definition>.<json field>"
	atomicStruct map[string]bool     // definitions with x-kubernetes-map-type: atomic
}

type listInfo struct {
	listType string   // atomic, set or map (lists)
	keys     []string // list-map keys
	mapType  string   // atomic or granular (maps and structs)
}

// loadListTypes reads client-go's schema. The parse is shared (client-go
// parses it once per process) with the API server's field manager.
func loadListTypes() (*listTypes, error) {
	s, err := smdSchema()
	if err != nil {
		return nil, err
	}
	lt := &listTypes{fields: map[string]listInfo{}, atomicStruct: map[string]bool{}}
	for _, td := range s.Types {
		m := td.Map
		if m == nil {
			continue
		}
		if m.ElementRelationship == smd.Atomic {
			lt.atomicStruct[td.Name] = true
		}
		for _, f := range m.Fields {
			if li, ok := fieldListInfo(f.Type); ok {
				lt.fields[td.Name+"."+f.Name] = li
			}
		}
	}
	return lt, nil
}

func fieldListInfo(ref smd.TypeRef) (listInfo, bool) {
	switch {
	case ref.Inlined.List != nil:
		l := ref.Inlined.List
		switch l.ElementRelationship {
		case smd.Associative:
			if len(l.Keys) == 0 {
				return listInfo{listType: "set"}, true
			}
			return listInfo{listType: "map", keys: l.Keys}, true
		case smd.Atomic:
			return listInfo{listType: "atomic"}, true
		}
	case ref.Inlined.Map != nil && ref.Inlined.Map.ElementRelationship == smd.Atomic:
		return listInfo{mapType: "atomic"}, true
	case ref.ElementRelationship != nil && *ref.ElementRelationship == smd.Atomic:
		return listInfo{mapType: "atomic"}, true
	}
	return listInfo{}, false
}

// smdSchema returns the schema behind client-go's apply configurations. Any
// typed value carries the whole schema: convert one empty ConfigMap.
func smdSchema() (*smd.Schema, error) {
	scheme := runtime.NewScheme()
	scheme.AddKnownTypes(corev1.SchemeGroupVersion, &corev1.ConfigMap{})
	tc := applyconfigurations.NewTypeConverter(scheme)
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap"}}
	tv, err := tc.ObjectToTyped(obj)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrListTypes, err)
	}
	return tv.Schema(), nil
}

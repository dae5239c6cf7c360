package openapi

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/skiff-org/skiff/pkg/registry"
)

var (
	docsOnce sync.Once
	docs     *Documents
	docsErr  error
)

// testDocuments builds the documents of testResources once for all tests.
func testDocuments(t *testing.T) *Documents {
	t.Helper()
	docsOnce.Do(func() { docs, docsErr = New(testResources(), "v1.33.0") })
	if docsErr != nil {
		t.Fatalf("New() error = %v", docsErr)
	}
	return docs
}

func loadV3(t *testing.T, d *Documents, gp string) *spec3.OpenAPI {
	t.Helper()
	doc, ok := d.v3[gp]
	if !ok {
		t.Fatalf("no v3 document for %q", gp)
	}
	var o spec3.OpenAPI
	if err := json.Unmarshal(doc.json, &o); err != nil {
		t.Fatalf("spec3 unmarshal of %s: %v", gp, err)
	}
	return &o
}

func loadV2(t *testing.T, d *Documents) *spec.Swagger {
	t.Helper()
	var s spec.Swagger
	if err := json.Unmarshal(d.v2.json, &s); err != nil {
		t.Fatalf("swagger unmarshal: %v", err)
	}
	return &s
}

// walkRefs calls f with every $ref in s.
func walkRefs(s *spec.Schema, f func(ref string)) {
	if s == nil {
		return
	}
	if r := s.Ref.String(); r != "" {
		f(r)
	}
	for i := range s.AllOf {
		walkRefs(&s.AllOf[i], f)
	}
	for i := range s.OneOf {
		walkRefs(&s.OneOf[i], f)
	}
	if s.Items != nil {
		walkRefs(s.Items.Schema, f)
	}
	if s.AdditionalProperties != nil {
		walkRefs(s.AdditionalProperties.Schema, f)
	}
	for k := range s.Properties {
		p := s.Properties[k]
		walkRefs(&p, f)
	}
}

func TestV3DocumentsResolve(t *testing.T) {
	d := testDocuments(t)
	for gp := range d.v3 {
		o := loadV3(t, d, gp)
		schemas := o.Components.Schemas
		resolved := 0
		check := func(where, ref string) {
			resolved++
			name, ok := strings.CutPrefix(ref, "#/components/schemas/")
			if !ok || schemas[name] == nil {
				t.Errorf("%s: %s: $ref %q does not resolve", gp, where, ref)
			}
		}
		for name, s := range schemas {
			walkRefs(s, func(ref string) { check(name, ref) })
		}
		for path, item := range o.Paths.Paths {
			for _, op := range []*spec3.Operation{item.Get, item.Put, item.Post, item.Delete, item.Patch} {
				if op == nil {
					continue
				}
				if op.RequestBody != nil {
					for _, mt := range op.RequestBody.Content {
						walkRefs(mt.Schema, func(ref string) { check(path, ref) })
					}
				}
				for _, resp := range op.Responses.StatusCodeResponses {
					for _, mt := range resp.Content {
						walkRefs(mt.Schema, func(ref string) { check(path, ref) })
					}
				}
			}
		}
		if resolved < 100 {
			t.Errorf("%s: only %d references checked, want the document's hundreds", gp, resolved)
		}
	}
}

func TestV2DocumentResolves(t *testing.T) {
	d := testDocuments(t)
	s := loadV2(t, d)
	for name, def := range s.Definitions {
		walkRefs(&def, func(ref string) {
			if _, ok := s.Definitions[strings.TrimPrefix(ref, "#/definitions/")]; !ok {
				t.Errorf("definition %s: $ref %q does not resolve", name, ref)
			}
		})
	}
	if _, err := openapiv2.ParseDocument(d.v2.json); err != nil {
		t.Errorf("gnostic ParseDocument(v2) error = %v", err)
	}
}

// property returns the description of a property, looking through the
// allOf wrapper v3 uses for described references.
func propertyDoc(s *spec.Schema, prop string) string {
	if s == nil {
		return ""
	}
	p, ok := s.Properties[prop]
	if !ok {
		return ""
	}
	return p.Description
}

func TestDescriptions(t *testing.T) {
	d := testDocuments(t)
	apps := loadV3(t, d, "apis/apps/v1").Components.Schemas
	core := loadV3(t, d, "api/v1").Components.Schemas
	v2 := loadV2(t, d).Definitions
	tests := []struct {
		schemas map[string]*spec.Schema
		def     string
		prop    string
		want    string
	}{
		{apps, "io.k8s.api.apps.v1.DeploymentSpec", "strategy", "The deployment strategy to use to replace existing pods"},
		{apps, "io.k8s.api.apps.v1.DeploymentStrategy", "type", "Type of deployment"},
		{apps, "io.k8s.api.apps.v1.DeploymentStrategy", "rollingUpdate", "Rolling update config params"},
		{core, "io.k8s.api.core.v1.PodSpec", "containers", "List of containers belonging to the pod"},
		{core, "io.k8s.api.core.v1.Container", "image", "Container image name"},
		{core, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "name", "Name must be unique within a namespace"},
	}
	for _, tt := range tests {
		if got := propertyDoc(tt.schemas[tt.def], tt.prop); !strings.Contains(got, tt.want) {
			t.Errorf("v3 %s.%s description = %q, want it to contain %q", tt.def, tt.prop, got, tt.want)
		}
		v2def := v2[tt.def]
		if got := propertyDoc(&v2def, tt.prop); !strings.Contains(got, tt.want) {
			t.Errorf("v2 %s.%s description = %q, want it to contain %q", tt.def, tt.prop, got, tt.want)
		}
	}
	if got := apps["io.k8s.api.apps.v1.Deployment"].Description; !strings.Contains(got, "declarative updates") {
		t.Errorf("Deployment description = %q, want the type's doc", got)
	}
}

// rawSchema returns one definition of a v3 document as generic JSON.
func rawSchema(t *testing.T, d *Documents, gp, name string) map[string]any {
	t.Helper()
	var doc struct {
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(d.v3[gp].json, &doc); err != nil {
		t.Fatal(err)
	}
	s, ok := doc.Components.Schemas[name]
	if !ok {
		t.Fatalf("%s has no schema %s", gp, name)
	}
	return s
}

func rawV2(t *testing.T, d *Documents, name string) map[string]any {
	t.Helper()
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(d.v2.json, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Definitions[name]
}

func TestSchemaShapes(t *testing.T) {
	d := testDocuments(t)
	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	prop := func(s map[string]any, name string) map[string]any {
		p, _ := s["properties"].(map[string]any)[name].(map[string]any)
		return p
	}
	container := rawSchema(t, d, "api/v1", "io.k8s.api.core.v1.Container")
	podSpec := rawSchema(t, d, "api/v1", "io.k8s.api.core.v1.PodSpec")
	deploySpec := rawSchema(t, d, "apis/apps/v1", "io.k8s.api.apps.v1.DeploymentSpec")
	tests := []struct {
		name string
		got  any
		want string
	}{
		{"Container.required", container["required"], `["name"]`},
		{"PodSpec.required", podSpec["required"], `["containers"]`},
		{"DeploymentSpec.required", deploySpec["required"], `["selector","template"]`},
		{"Container.env list type", prop(container, "env")["x-kubernetes-list-type"], `"map"`},
		{"EphemeralContainer.env (inlined) map keys", prop(rawSchema(t, d, "api/v1", "io.k8s.api.core.v1.EphemeralContainer"), "env")["x-kubernetes-list-map-keys"], `["name"]`},
		{"Container.env map keys", prop(container, "env")["x-kubernetes-list-map-keys"], `["name"]`},
		{"Container.env patch strategy", prop(container, "env")["x-kubernetes-patch-strategy"], `"merge"`},
		{"Container.env merge key", prop(container, "env")["x-kubernetes-patch-merge-key"], `"name"`},
		{"Container.ports map keys", prop(container, "ports")["x-kubernetes-list-map-keys"], `["containerPort","protocol"]`},
		{"Container.ports merge key", prop(container, "ports")["x-kubernetes-patch-merge-key"], `"containerPort"`},
		{"PodSpec.containers merge key", prop(podSpec, "containers")["x-kubernetes-patch-merge-key"], `"name"`},
		{"PodSpec.containers items", prop(podSpec, "containers")["items"], `{"$ref":"#/components/schemas/io.k8s.api.core.v1.Container"}`},
		{"PodSpec.nodeSelector", prop(podSpec, "nodeSelector")["additionalProperties"], `{"type":"string"}`},
		{"DeploymentSpec.replicas", prop(deploySpec, "replicas")["format"], `"int32"`},
		{"DeploymentSpec.strategy patch strategy", prop(deploySpec, "strategy")["x-kubernetes-patch-strategy"], `"retainKeys"`},
		{"DeploymentSpec.strategy v3 allOf", prop(deploySpec, "strategy")["allOf"], `[{"$ref":"#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}]`},
		{"v2 DeploymentSpec.strategy $ref", prop(rawV2(t, d, "io.k8s.api.apps.v1.DeploymentSpec"), "strategy")["$ref"], `"#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"`},
		{"ObjectMeta.creationTimestamp", prop(rawSchema(t, d, "api/v1", "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"), "creationTimestamp")["allOf"], `[{"$ref":"#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Time"}]`},
		{"Time type", rawSchema(t, d, "api/v1", "io.k8s.apimachinery.pkg.apis.meta.v1.Time")["format"], `"date-time"`},
		{"IntOrString v3 oneOf", rawSchema(t, d, "api/v1", "io.k8s.apimachinery.pkg.util.intstr.IntOrString")["oneOf"], `[{"type":"integer"},{"type":"string"}]`},
		{"IntOrString v3 extension", rawSchema(t, d, "api/v1", "io.k8s.apimachinery.pkg.util.intstr.IntOrString")["x-kubernetes-int-or-string"], `true`},
		{"IntOrString v2 type", rawV2(t, d, "io.k8s.apimachinery.pkg.util.intstr.IntOrString")["type"], `"string"`},
		{"IntOrString v2 format", rawV2(t, d, "io.k8s.apimachinery.pkg.util.intstr.IntOrString")["format"], `"int-or-string"`},
		{"Quantity v3 oneOf", rawSchema(t, d, "api/v1", "io.k8s.apimachinery.pkg.api.resource.Quantity")["oneOf"], `[{"type":"string"},{"type":"number"}]`},
		{"Quantity v2 type", rawV2(t, d, "io.k8s.apimachinery.pkg.api.resource.Quantity")["type"], `"string"`},
		{"RawExtension", rawSchema(t, d, "api/v1", "io.k8s.apimachinery.pkg.runtime.RawExtension")["type"], `"object"`},
		{"LabelSelector map type", rawSchema(t, d, "apis/apps/v1", "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector")["x-kubernetes-map-type"], `"atomic"`},
		{"ConfigMap binaryData", prop(rawSchema(t, d, "api/v1", "io.k8s.api.core.v1.ConfigMap"), "binaryData")["additionalProperties"], `{"format":"byte","type":"string"}`},
		{"Deployment GVK", rawSchema(t, d, "apis/apps/v1", "io.k8s.api.apps.v1.Deployment")["x-kubernetes-group-version-kind"], `[{"group":"apps","kind":"Deployment","version":"v1"}]`},
		{"DeploymentList GVK", rawSchema(t, d, "apis/apps/v1", "io.k8s.api.apps.v1.DeploymentList")["x-kubernetes-group-version-kind"], `[{"group":"apps","kind":"DeploymentList","version":"v1"}]`},
		{"Scale GVK", rawSchema(t, d, "apis/apps/v1", "io.k8s.api.autoscaling.v1.Scale")["x-kubernetes-group-version-kind"], `[{"group":"autoscaling","kind":"Scale","version":"v1"}]`},
		{"Status GVK", rawV2(t, d, "io.k8s.apimachinery.pkg.apis.meta.v1.Status")["x-kubernetes-group-version-kind"], `[{"group":"","kind":"Status","version":"v1"}]`},
		{"DeleteOptions GVK", rawV2(t, d, "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions")["x-kubernetes-group-version-kind"], `[{"group":"","kind":"DeleteOptions","version":"v1"},{"group":"apps","kind":"DeleteOptions","version":"v1"}]`},
	}
	for _, tt := range tests {
		if got := js(tt.got); got != tt.want {
			t.Errorf("%s = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// TestPatchOperationsHaveFieldValidation checks what kubectl looks for to
// decide that the server validates fields: every PATCH operation of a kind
// lists the fieldValidation query parameter.
func TestPatchOperationsHaveFieldValidation(t *testing.T) {
	d := testDocuments(t)
	seen := map[string]bool{}
	for gp := range d.v3 {
		for path, item := range loadV3(t, d, gp).Paths.Paths {
			for method, op := range map[string]*spec3.Operation{"put": item.Put, "post": item.Post, "patch": item.Patch} {
				if op == nil {
					continue
				}
				var names []string
				for _, p := range op.Parameters {
					names = append(names, p.Name)
				}
				for _, want := range []string{"fieldValidation", "dryRun", "fieldManager"} {
					if !slices.Contains(names, want) {
						t.Errorf("%s %s parameters = %v, want %s", method, path, names, want)
					}
				}
				var k gvk
				if err := op.Extensions.GetObject("x-kubernetes-group-version-kind", &k); err != nil || k.Kind == "" {
					t.Errorf("%s %s has no x-kubernetes-group-version-kind", method, path)
				}
				if method == "patch" {
					seen[k.Group+"/"+k.Version+"/"+k.Kind] = true
				}
			}
		}
	}
	for _, want := range []string{"apps/v1/Deployment", "/v1/Pod", "/v1/Namespace", "/v1/ConfigMap", "autoscaling/v1/Scale"} {
		if !seen[want] {
			t.Errorf("no PATCH operation for %s; have %v", want, seen)
		}
	}
}

func TestOperations(t *testing.T) {
	d := testDocuments(t)
	core := loadV3(t, d, "api/v1").Paths.Paths
	apps := loadV3(t, d, "apis/apps/v1").Paths.Paths
	opID := func(paths map[string]*spec3.Path, path, method string) string {
		item, ok := paths[path]
		if !ok {
			return "<no path>"
		}
		op := map[string]*spec3.Operation{"get": item.Get, "put": item.Put, "post": item.Post, "delete": item.Delete, "patch": item.Patch}[method]
		if op == nil {
			return "<no operation>"
		}
		return op.OperationId
	}
	tests := []struct {
		paths        map[string]*spec3.Path
		path, method string
		want         string
	}{
		{core, "/api/v1/namespaces/{namespace}/pods", "get", "listCoreV1NamespacedPod"},
		{core, "/api/v1/namespaces/{namespace}/pods", "post", "createCoreV1NamespacedPod"},
		{core, "/api/v1/namespaces/{namespace}/pods", "delete", "deleteCoreV1CollectionNamespacedPod"},
		{core, "/api/v1/namespaces/{namespace}/pods/{name}", "patch", "patchCoreV1NamespacedPod"},
		{core, "/api/v1/namespaces/{namespace}/pods/{name}/status", "put", "replaceCoreV1NamespacedPodStatus"},
		{core, "/api/v1/pods", "get", "listCoreV1PodForAllNamespaces"},
		{core, "/api/v1/watch/namespaces/{namespace}/pods", "get", "watchCoreV1NamespacedPodList"},
		{core, "/api/v1/watch/pods", "get", "watchCoreV1PodListForAllNamespaces"},
		{core, "/api/v1/namespaces/{name}", "get", "readCoreV1Namespace"},
		{core, "/api/v1/namespaces", "delete", "<no operation>"},
		{core, "/api/v1/namespaces/{namespace}/pods/{name}/binding", "post", "createCoreV1NamespacedPodBinding"},
		{apps, "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale", "patch", "patchAppsV1NamespacedDeploymentScale"},
		{apps, "/apis/apps/v1/namespaces/{namespace}/deployments/{name}", "delete", "deleteAppsV1NamespacedDeployment"},
		{apps, "/apis/apps/v1/", "get", "getAppsV1APIResources"},
	}
	for _, tt := range tests {
		if got := opID(tt.paths, tt.path, tt.method); got != tt.want {
			t.Errorf("operationId of %s %s = %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
	if _, ok := apps["/api/v1/pods"]; ok {
		t.Errorf("apps/v1 document holds core paths")
	}
}

func TestGroupCamel(t *testing.T) {
	tests := map[string]string{"": "Core", "apps": "Apps", "coordination.k8s.io": "Coordination",
		"rbac.authorization.k8s.io": "RbacAuthorization", "example.com": "ExampleCom"}
	for in, want := range tests {
		if got := groupCamel(in); got != want {
			t.Errorf("groupCamel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDefinitionName(t *testing.T) {
	type local struct{}
	tests := []struct {
		t    reflect.Type
		want string
	}{
		{reflect.TypeFor[spec.Schema](), "io.k8s.kube-openapi.pkg.validation.spec.Schema"},
		{reflect.TypeFor[local](), "com.github.skiff-org.skiff.pkg.apiserver.openapi.local"},
	}
	for _, tt := range tests {
		if got := definitionName(tt.t); got != tt.want {
			t.Errorf("definitionName(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

// TestAllResources builds the documents of every resource the registry
// serves and checks that each kind can be found by its GVK, as kubectl
// explain finds it.
func TestAllResources(t *testing.T) {
	resources := registry.All()
	if len(resources) == 0 {
		t.Skip("registry serves no resources yet")
	}
	d, err := New(resources, "v1.33.0")
	if err != nil {
		t.Fatalf("New(registry.All()) error = %v", err)
	}
	for _, r := range resources {
		gp := groupPath(r.Group, r.Version)
		o := loadV3(t, d, gp)
		found := false
		for _, s := range o.Components.Schemas {
			var ks []gvk
			if s.Extensions.GetObject("x-kubernetes-group-version-kind", &ks) == nil &&
				slices.Contains(ks, gvk{Group: r.Group, Version: r.Version, Kind: r.Kind}) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s has no schema with the GVK of %s", gp, r.Kind)
		}
	}
	if _, err := d.v2.protobuf(); err != nil {
		t.Errorf("v2 protobuf: %v", err)
	}
}

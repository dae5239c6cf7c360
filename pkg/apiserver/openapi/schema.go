package openapi

import (
	"reflect"
	"sort"
	"strings"
)

// schema is one JSON schema as both OpenAPI versions write it. The few
// differences between v2 and v3 (where references point, how a reference
// with its own description is wrapped, the shape of int-or-string and
// quantities) are decided by the builder that fills it.
type schema struct {
	Ref                  string             `json:"$ref,omitempty"`
	AllOf                []*schema          `json:"allOf,omitempty"`
	OneOf                []*schema          `json:"oneOf,omitempty"`
	Description          string             `json:"description,omitempty"`
	Type                 string             `json:"type,omitempty"`
	Format               string             `json:"format,omitempty"`
	UniqueItems          bool               `json:"uniqueItems,omitempty"`
	Items                *schema            `json:"items,omitempty"`
	Properties           map[string]*schema `json:"properties,omitempty"`
	AdditionalProperties *schema            `json:"additionalProperties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	GVK                  []gvk              `json:"x-kubernetes-group-version-kind,omitempty"`
	IntOrString          bool               `json:"x-kubernetes-int-or-string,omitempty"`
	ListMapKeys          []string           `json:"x-kubernetes-list-map-keys,omitempty"`
	ListType             string             `json:"x-kubernetes-list-type,omitempty"`
	MapType              string             `json:"x-kubernetes-map-type,omitempty"`
	PatchMergeKey        string             `json:"x-kubernetes-patch-merge-key,omitempty"`
	PatchStrategy        string             `json:"x-kubernetes-patch-strategy,omitempty"`
}

// gvk is the value of x-kubernetes-group-version-kind; Kubernetes writes the
// keys in this (alphabetical) order.
type gvk struct {
	Group   string `json:"group"`
	Kind    string `json:"kind"`
	Version string `json:"version"`
}

// Interfaces that apimachinery's hand-written types (Time, Quantity,
// IntOrString, Duration...) implement to say how they appear on the wire.
type (
	swaggerDocer     interface{ SwaggerDoc() map[string]string }
	openAPITyper     interface{ OpenAPISchemaType() []string }
	openAPIFormatter interface{ OpenAPISchemaFormat() string }
	openAPIOneOfer   interface{ OpenAPIV3OneOfTypes() []string }
)

// builder turns Go types into definitions for one OpenAPI version.
type builder struct {
	v3     bool
	prefix string // "#/definitions/" or "#/components/schemas/"
	lists  *listTypes
	defs   map[string]*schema
}

func newBuilder(v3 bool, lists *listTypes) *builder {
	b := &builder{v3: v3, prefix: "#/definitions/", lists: lists, defs: map[string]*schema{}}
	if v3 {
		b.prefix = "#/components/schemas/"
	}
	return b
}

// definitionName names a Go type as Kubernetes names its OpenAPI definition:
// the import path with its host reversed, dots for slashes, then the type
// (k8s.io/api/apps/v1.Deployment → io.k8s.api.apps.v1.Deployment).
// Types generated with an OpenAPIModelName method name themselves.
func definitionName(t reflect.Type) string {
	if n, ok := reflect.Zero(t).Interface().(interface{ OpenAPIModelName() string }); ok {
		return n.OpenAPIModelName()
	}
	path := t.PkgPath()
	host, rest, _ := strings.Cut(path, "/")
	parts := strings.Split(host, ".")
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	name := strings.Join(parts, ".")
	if rest != "" {
		name += "." + strings.ReplaceAll(rest, "/", ".")
	}
	return name + "." + t.Name()
}

// define adds the definition of struct type t (and of every type it uses)
// and returns its name.
func (b *builder) define(t reflect.Type) string {
	name := definitionName(t)
	if _, ok := b.defs[name]; ok {
		return name
	}
	s := &schema{}
	b.defs[name] = s // before the fields, so that recursive types end
	zero := reflect.Zero(t).Interface()
	doc := swaggerDoc(zero)
	s.Description = doc[""]
	if s.Description == "" {
		s.Description = extraDocs[name]
	}
	if typer, ok := zero.(openAPITyper); ok {
		b.special(s, zero, typer)
		return name
	}
	s.Type = "object"
	props := map[string]*schema{}
	b.fields(t, name, name, doc, props, &s.Required)
	if len(props) > 0 {
		s.Properties = props
	}
	if b.lists.atomicStruct[name] {
		s.MapType = "atomic"
	}
	return name
}

// special fills the schema of a type that marshals itself as a scalar.
func (b *builder) special(s *schema, zero any, typer openAPITyper) {
	if f, ok := zero.(openAPIFormatter); ok {
		s.Format = f.OpenAPISchemaFormat()
	}
	oneOf, ok := zero.(openAPIOneOfer)
	if !b.v3 || !ok {
		if types := typer.OpenAPISchemaType(); len(types) > 0 {
			s.Type = types[0]
		}
		return
	}
	for _, t := range oneOf.OpenAPIV3OneOfTypes() {
		s.OneOf = append(s.OneOf, &schema{Type: t})
	}
	if s.Format == "int-or-string" {
		s.IntOrString = true
	}
}

// fields adds the properties of struct t to props, flattening inlined
// embedded structs as encoding/json does. def is the definition being
// built, owner the type that declares the fields (t itself, or the embedded
// type for inlined fields).
func (b *builder) fields(t reflect.Type, def, owner string, doc map[string]string, props map[string]*schema, required *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, hasTag := f.Tag.Lookup("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				b.fields(et, def, definitionName(et), swaggerDoc(reflect.Zero(et).Interface()), props, required)
				continue
			}
		}
		if !hasTag || name == "" {
			continue // Kubernetes types tag every serialized field
		}
		p := b.fieldSchema(f, def+"."+name, doc[name])
		props[name] = p
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && !optionalFields[owner+"."+name] {
			*required = append(*required, name)
		}
	}
}

// fieldSchema is the schema of one property, with its description and the
// merge extensions that apply to it; key is "<definition>.<property>", as the
// merge schema (which flattens inlined structs too) names it.
func (b *builder) fieldSchema(f reflect.StructField, key, description string) *schema {
	s := b.typeSchema(f.Type)
	ext := &schema{
		Description:   description,
		PatchStrategy: f.Tag.Get("patchStrategy"),
		PatchMergeKey: f.Tag.Get("patchMergeKey"),
	}
	if li, ok := b.lists.fields[key]; ok {
		switch {
		case s.Type == "array":
			ext.ListType, ext.ListMapKeys = li.listType, li.keys
		case s.Type == "object" || s.Ref != "":
			ext.MapType = li.mapType
		}
	}
	if s.Ref == "" {
		s.Description = ext.Description
		s.PatchStrategy, s.PatchMergeKey = ext.PatchStrategy, ext.PatchMergeKey
		s.ListType, s.ListMapKeys, s.MapType = ext.ListType, ext.ListMapKeys, ext.MapType
		return s
	}
	if ext.Description == "" && ext.PatchStrategy == "" && ext.MapType == "" {
		return s
	}
	if b.v3 {
		// OpenAPI 3.0 ignores siblings of $ref; Kubernetes wraps the
		// reference in allOf so that the description survives.
		ext.AllOf = []*schema{s}
		return ext
	}
	ext.Ref = s.Ref
	return ext
}

// typeSchema is the schema of a value of Go type t.
func (b *builder) typeSchema(t reflect.Type) *schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return &schema{Type: "string"}
	case reflect.Bool:
		return &schema{Type: "boolean"}
	case reflect.Int32, reflect.Int, reflect.Int16, reflect.Int8, reflect.Uint16, reflect.Uint8:
		return &schema{Type: "integer", Format: "int32"}
	case reflect.Int64, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return &schema{Type: "integer", Format: "int64"}
	case reflect.Float64:
		return &schema{Type: "number", Format: "double"}
	case reflect.Float32:
		return &schema{Type: "number", Format: "float"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return &schema{Type: "string", Format: "byte"}
		}
		return &schema{Type: "array", Items: b.typeSchema(t.Elem())}
	case reflect.Map:
		return &schema{Type: "object", AdditionalProperties: b.typeSchema(t.Elem())}
	case reflect.Struct:
		return &schema{Ref: b.prefix + b.define(t)}
	default: // interfaces: any JSON value
		return &schema{Type: "object"}
	}
}

func swaggerDoc(zero any) map[string]string {
	if d, ok := zero.(swaggerDocer); ok {
		return d.SwaggerDoc()
	}
	return nil
}

// refs returns the names of the definitions s refers to, sorted.
func refs(s *schema, prefix string) []string {
	seen := map[string]bool{}
	var walk func(*schema)
	walk = func(s *schema) {
		if s == nil {
			return
		}
		if s.Ref != "" {
			seen[strings.TrimPrefix(s.Ref, prefix)] = true
		}
		for _, c := range s.AllOf {
			walk(c)
		}
		for _, c := range s.OneOf {
			walk(c)
		}
		walk(s.Items)
		walk(s.AdditionalProperties)
		for _, p := range s.Properties {
			walk(p)
		}
	}
	walk(s)
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

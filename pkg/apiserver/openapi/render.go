package openapi

import "sort"

// The document shapes. Field order follows no rule of the specs; maps are
// written with sorted keys, so every document is deterministic.

type info struct {
	Title   string `json:"title"`
	Version string `json:"version"`
}

type securityScheme struct {
	Type        string `json:"type"`
	Name        string `json:"name"`
	In          string `json:"in"`
	Description string `json:"description"`
}

var bearer = map[string]securityScheme{"BearerToken": {
	Type: "apiKey", Name: "authorization", In: "header",
	Description: "Bearer token authentication: the header value is \"Bearer <token>\".",
}}

var security = []map[string][]string{{"BearerToken": {}}}

// Swagger 2.0.

type swagger struct {
	Swagger             string                    `json:"swagger"`
	Info                info                      `json:"info"`
	Paths               map[string]*pathItem2     `json:"paths"`
	Definitions         map[string]*schema        `json:"definitions"`
	SecurityDefinitions map[string]securityScheme `json:"securityDefinitions"`
	Security            []map[string][]string     `json:"security"`
}

type pathItem2 struct {
	Get        *operation2 `json:"get,omitempty"`
	Put        *operation2 `json:"put,omitempty"`
	Post       *operation2 `json:"post,omitempty"`
	Delete     *operation2 `json:"delete,omitempty"`
	Patch      *operation2 `json:"patch,omitempty"`
	Parameters []param2    `json:"parameters,omitempty"`
}

type operation2 struct {
	Description string               `json:"description"`
	Consumes    []string             `json:"consumes,omitempty"`
	Produces    []string             `json:"produces"`
	Schemes     []string             `json:"schemes"`
	Tags        []string             `json:"tags"`
	OperationID string               `json:"operationId"`
	Parameters  []param2             `json:"parameters,omitempty"`
	Responses   map[string]response2 `json:"responses"`
	Action      string               `json:"x-kubernetes-action,omitempty"`
	GVK         *gvk                 `json:"x-kubernetes-group-version-kind,omitempty"`
}

type param2 struct {
	UniqueItems bool    `json:"uniqueItems,omitempty"`
	Type        string  `json:"type,omitempty"`
	Description string  `json:"description,omitempty"`
	Name        string  `json:"name"`
	In          string  `json:"in"`
	Required    bool    `json:"required,omitempty"`
	Schema      *schema `json:"schema,omitempty"`
}

type response2 struct {
	Description string  `json:"description"`
	Schema      *schema `json:"schema,omitempty"`
}

// OpenAPI 3.0.

type openAPI3 struct {
	OpenAPI    string                `json:"openapi"`
	Info       info                  `json:"info"`
	Paths      map[string]*pathItem3 `json:"paths"`
	Components components3           `json:"components"`
	Security   []map[string][]string `json:"security"`
}

type components3 struct {
	Schemas         map[string]*schema        `json:"schemas"`
	SecuritySchemes map[string]securityScheme `json:"securitySchemes"`
}

type pathItem3 struct {
	Get        *operation3 `json:"get,omitempty"`
	Put        *operation3 `json:"put,omitempty"`
	Post       *operation3 `json:"post,omitempty"`
	Delete     *operation3 `json:"delete,omitempty"`
	Patch      *operation3 `json:"patch,omitempty"`
	Parameters []param3    `json:"parameters,omitempty"`
}

type operation3 struct {
	Tags        []string             `json:"tags"`
	Description string               `json:"description"`
	OperationID string               `json:"operationId"`
	Parameters  []param3             `json:"parameters,omitempty"`
	RequestBody *requestBody3        `json:"requestBody,omitempty"`
	Responses   map[string]response3 `json:"responses"`
	Action      string               `json:"x-kubernetes-action,omitempty"`
	GVK         *gvk                 `json:"x-kubernetes-group-version-kind,omitempty"`
}

type param3 struct {
	Name        string  `json:"name"`
	In          string  `json:"in"`
	Description string  `json:"description,omitempty"`
	Required    bool    `json:"required,omitempty"`
	Schema      *schema `json:"schema"`
}

type requestBody3 struct {
	Content  map[string]media3 `json:"content"`
	Required bool              `json:"required"`
}

type media3 struct {
	Schema *schema `json:"schema"`
}

type response3 struct {
	Description string            `json:"description"`
	Content     map[string]media3 `json:"content,omitempty"`
}

// index3 is GET /openapi/v3: where each group-version's document is.
type index3 struct {
	Paths map[string]indexEntry `json:"paths"`
}

type indexEntry struct {
	ServerRelativeURL string `json:"serverRelativeURL"`
}

func v2Params(ps []param) []param2 {
	out := make([]param2, 0, len(ps))
	for _, p := range ps {
		out = append(out, param2{UniqueItems: true, Type: p.typ, Description: p.desc, Name: p.name, In: p.in, Required: p.required})
	}
	return out
}

func v3Params(ps []param) []param3 {
	out := make([]param3, 0, len(ps))
	for _, p := range ps {
		out = append(out, param3{Name: p.name, In: p.in, Description: p.desc, Required: p.required,
			Schema: &schema{Type: p.typ, UniqueItems: true}})
	}
	return out
}

// renderV2 adds the endpoints to a Swagger 2.0 paths map.
func renderV2(paths map[string]*pathItem2, eps []endpoint) {
	ref := func(def string) *schema {
		if def == "" {
			return &schema{Type: "string"}
		}
		return &schema{Ref: "#/definitions/" + def}
	}
	for _, ep := range eps {
		item := &pathItem2{Parameters: v2Params(ep.pathParams)}
		if len(item.Parameters) == 0 {
			item.Parameters = nil
		}
		for _, o := range ep.ops {
			op := &operation2{
				Description: o.desc, Consumes: o.consumes, Produces: o.produces, Schemes: []string{"https"},
				Tags: []string{o.tag}, OperationID: o.id, Action: o.action, GVK: o.gvk,
				Responses: map[string]response2{},
			}
			if o.body != "" {
				op.Parameters = append(op.Parameters, param2{Name: "body", In: "body", Required: o.body != defDelete, Schema: ref(o.body)})
			}
			op.Parameters = append(op.Parameters, v2Params(o.query)...)
			for _, r := range o.responses {
				resp := response2{Description: r.desc}
				if r.code != "401" {
					resp.Schema = ref(r.def)
				}
				op.Responses[r.code] = resp
			}
			setOp(o.method, &item.Get, &item.Put, &item.Post, &item.Delete, &item.Patch, op)
		}
		paths[ep.path] = item
	}
}

// renderV3 adds the endpoints to an OpenAPI 3.0 paths map.
func renderV3(paths map[string]*pathItem3, eps []endpoint) {
	ref := func(def string) *schema {
		if def == "" {
			return &schema{Type: "string"}
		}
		return &schema{Ref: "#/components/schemas/" + def}
	}
	for _, ep := range eps {
		item := &pathItem3{Parameters: v3Params(ep.pathParams)}
		if len(item.Parameters) == 0 {
			item.Parameters = nil
		}
		for _, o := range ep.ops {
			op := &operation3{
				Tags: []string{o.tag}, Description: o.desc, OperationID: o.id, Action: o.action, GVK: o.gvk,
				Parameters: v3Params(o.query), Responses: map[string]response3{},
			}
			if len(op.Parameters) == 0 {
				op.Parameters = nil
			}
			if o.body != "" {
				rb := &requestBody3{Content: map[string]media3{}, Required: o.body != defDelete}
				for _, mt := range o.consumes {
					rb.Content[mt] = media3{Schema: ref(o.body)}
				}
				op.RequestBody = rb
			}
			for _, r := range o.responses {
				resp := response3{Description: r.desc}
				if r.code != "401" {
					resp.Content = map[string]media3{}
					for _, mt := range o.produces {
						resp.Content[mt] = media3{Schema: ref(r.def)}
					}
				}
				op.Responses[r.code] = resp
			}
			setOp(o.method, &item.Get, &item.Put, &item.Post, &item.Delete, &item.Patch, op)
		}
		paths[ep.path] = item
	}
}

func setOp[T any](method string, get, put, post, del, patch **T, op *T) {
	switch method {
	case "get":
		*get = op
	case "put":
		*put = op
	case "post":
		*post = op
	case "delete":
		*del = op
	case "patch":
		*patch = op
	}
}

// closure returns roots and every definition they reach in defs.
func closure(defs map[string]*schema, roots []string, prefix string) map[string]*schema {
	out := map[string]*schema{}
	var visit func(string)
	visit = func(name string) {
		if _, ok := out[name]; ok {
			return
		}
		s, ok := defs[name]
		if !ok {
			return
		}
		out[name] = s
		for _, r := range refs(s, prefix) {
			visit(r)
		}
	}
	for _, r := range roots {
		visit(r)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

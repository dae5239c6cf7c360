package openapi

import (
	"strings"

	"github.com/skiff-org/skiff/pkg/registry"
)

// endpoint is one URL path and its operations, in a form that both OpenAPI
// versions render.
type endpoint struct {
	path       string
	groupPath  string // "api/v1" or "apis/<group>/<version>": the v3 document it belongs to
	pathParams []param
	ops        []operation
}

type operation struct {
	method    string // get, put, post, delete, patch
	action    string // x-kubernetes-action
	id        string // operationId
	desc      string
	tag       string
	gvk       *gvk
	body      string   // definition of the request body; "" for none
	consumes  []string // request media types when there is a body
	produces  []string
	query     []param
	responses []response
}

type response struct {
	code string
	desc string
	def  string // definition of the body; "" for a plain string
}

type param struct {
	name     string
	in       string // path or query
	typ      string // string, boolean or integer
	desc     string
	required bool
}

const (
	metaV1         = "io.k8s.apimachinery.pkg.apis.meta.v1."
	defStatus      = metaV1 + "Status"
	defDelete      = metaV1 + "DeleteOptions"
	defWatchEvent  = metaV1 + "WatchEvent"
	defPatch       = metaV1 + "Patch"
	defResources   = metaV1 + "APIResourceList"
	defScale       = "io.k8s.api.autoscaling.v1.Scale"
	defBinding     = "io.k8s.api.core.v1.Binding"
	mimeJSON       = "application/json"
	mimeYAML       = "application/yaml"
	mimeProtobuf   = "application/vnd.kubernetes.protobuf"
	mimeJSONStream = "application/json;stream=watch"
	mimePBStream   = "application/vnd.kubernetes.protobuf;stream=watch"
)

var (
	producesObject = []string{mimeJSON, mimeYAML, mimeProtobuf}
	producesList   = []string{mimeJSON, mimeYAML, mimeProtobuf, mimeJSONStream, mimePBStream}
	consumesAny    = []string{"*/*"}
	consumesPatch  = []string{"application/json-patch+json", "application/merge-patch+json",
		"application/strategic-merge-patch+json", "application/apply-patch+yaml"}
)

func q(name, typ, desc string) param { return param{name: name, in: "query", typ: typ, desc: desc} }

// The query parameters Kubernetes documents, described in our words.
var (
	pPretty          = q("pretty", "string", "If 'true', the output is indented for reading.")
	pDryRun          = q("dryRun", "string", "When present, the request is validated and admitted but nothing is persisted. The only valid value is All.")
	pFieldManager    = q("fieldManager", "string", "Name of the actor making the change, recorded in managedFields. Required for apply patches; at most 128 printable characters.")
	pFieldValidation = q("fieldValidation", "string", "What the server does with unknown or duplicate fields in the body: Ignore (drop them silently), Warn (drop them and return a warning header per field) or Strict (reject the request naming every such field). The default is Warn.")
	pForce           = q("force", "boolean", "For apply patches only: take ownership of fields that conflict with other managers instead of failing. Must be unset for other patch types.")
	pAllowBookmarks  = q("allowWatchBookmarks", "boolean", "Ask for BOOKMARK watch events, which carry only a resourceVersion to resume from. The server may send none.")
	pContinue        = q("continue", "string", "The continue token of the previous page of a paginated list; the other list parameters must not change between pages.")
	pFieldSelector   = q("fieldSelector", "string", "Restrict the objects returned by their fields, e.g. metadata.name=web or status.phase!=Running. Everything by default.")
	pLabelSelector   = q("labelSelector", "string", "Restrict the objects returned by their labels, e.g. app=web,tier!=cache or env in (a,b). Everything by default.")
	pLimit           = q("limit", "integer", "The most items to return in one page; when more remain, the list's metadata.continue holds the token for the next page.")
	pResourceVersion = q("resourceVersion", "string", "Which version of the data to serve; how it applies is set by resourceVersionMatch. Unset means the most recent.")
	pRVMatch         = q("resourceVersionMatch", "string", "How resourceVersion applies to a list: Exact or NotOlderThan. Only valid with resourceVersion set.")
	pSendInitial     = q("sendInitialEvents", "boolean", "For watches: start with synthetic ADDED events for the current state, followed by a bookmark marking its end.")
	pTimeoutSeconds  = q("timeoutSeconds", "integer", "How long a list or watch call may last, in seconds.")
	pWatch           = q("watch", "boolean", "Turn the list into a stream of added, modified and deleted events. Prefer a list followed by a watch from its resourceVersion.")
	pGrace           = q("gracePeriodSeconds", "integer", "Seconds before the object is deleted; zero means immediately. Unset uses the type's default.")
	pIgnoreStoreErr  = q("ignoreStoreReadErrorWithClusterBreakingPotential", "boolean", "Delete objects that cannot be read from storage (corrupt or undecryptable), skipping finalizers and admission. Dangerous.")
	pOrphan          = q("orphanDependents", "boolean", "Deprecated; use propagationPolicy. Whether dependents are orphaned rather than garbage collected.")
	pPropagation     = q("propagationPolicy", "string", "How dependents are garbage collected: Orphan, Background or Foreground.")

	listParams     = []param{pAllowBookmarks, pContinue, pFieldSelector, pLabelSelector, pLimit, pResourceVersion, pRVMatch, pSendInitial, pTimeoutSeconds, pWatch}
	writeParams    = []param{pDryRun, pFieldManager, pFieldValidation}
	patchParams    = []param{pDryRun, pFieldManager, pFieldValidation, pForce}
	deleteParams   = []param{pDryRun, pGrace, pIgnoreStoreErr, pOrphan, pPropagation}
	deleteColParam = []param{pContinue, pDryRun, pFieldSelector, pGrace, pIgnoreStoreErr, pLabelSelector, pLimit, pOrphan, pPropagation, pResourceVersion, pRVMatch, pSendInitial, pTimeoutSeconds}

	pName      = param{name: "name", in: "path", typ: "string", desc: "name of the object", required: true}
	pNamespace = param{name: "namespace", in: "path", typ: "string", desc: "object name and auth scope, such as for teams and projects", required: true}
)

var unauthorized = response{code: "401", desc: "Unauthorized"}

// groupPath is where a group-version is served, without the leading slash.
func groupPath(group, version string) string {
	if group == "" {
		return "api/" + version
	}
	return "apis/" + group + "/" + version
}

// groupCamel names a group in operation ids: "" → Core,
// "coordination.k8s.io" → Coordination, "rbac.authorization.k8s.io" →
// RbacAuthorization.
func groupCamel(group string) string {
	if group == "" {
		return "Core"
	}
	group = strings.TrimSuffix(group, ".k8s.io")
	var b strings.Builder
	for _, part := range strings.Split(group, ".") {
		b.WriteString(upperFirst(part))
	}
	return b.String()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// endpoints returns the paths and operations of one resource, as Kubernetes
// lays them out. kindDef and listDef are the definitions of its kind and list.
func endpoints(r *registry.Resource, kindDef, listDef string) []endpoint {
	gp := groupPath(r.Group, r.Version)
	prefix := "/" + gp
	gv := upperFirst(r.Version)
	idPart := groupCamel(r.Group) + gv // CoreV1
	tag := lowerFirst(groupCamel(r.Group)) + "_" + r.Version
	kind := &gvk{Group: r.Group, Version: r.Version, Kind: r.Kind}
	scope, nsPath, nsParams := "", "", []param(nil)
	if r.Namespaced {
		scope, nsPath, nsParams = "Namespaced", "/namespaces/{namespace}", []param{pNamespace}
	}
	id := func(verb, suffix string) string { return verb + idPart + scope + r.Kind + suffix }
	op := func(method, action, id, desc string) operation {
		return operation{method: method, action: action, id: id, desc: desc, tag: tag, gvk: kind, produces: producesObject}
	}
	ok := func(def string) response { return response{code: "200", desc: "OK", def: def} }
	created := func(def string) response { return response{code: "201", desc: "Created", def: def} }
	accepted := func(def string) response { return response{code: "202", desc: "Accepted", def: def} }
	withParams := func(ps ...[]param) []param {
		var out []param
		for _, p := range ps {
			out = append(out, p...)
		}
		return out
	}

	collection := prefix + nsPath + "/" + r.Resource
	item := collection + "/{name}"
	itemParams := withParams([]param{pName}, nsParams, []param{pPretty})
	collParams := withParams(nsParams, []param{pPretty})

	list := op("get", "list", id("list", ""), "list or watch objects of kind "+r.Kind)
	list.produces, list.query, list.responses = producesList, listParams, []response{ok(listDef), unauthorized}
	create := op("post", "post", id("create", ""), "create "+article(r.Kind))
	create.body, create.consumes, create.query = kindDef, consumesAny, writeParams
	create.responses = []response{ok(kindDef), created(kindDef), accepted(kindDef), unauthorized}
	ops := []operation{list, create}
	if r.GroupVersionResource.Resource != "namespaces" {
		delCol := op("delete", "deletecollection", "delete"+idPart+"Collection"+scope+r.Kind, "delete collection of "+r.Kind)
		delCol.body, delCol.consumes, delCol.query = defDelete, consumesAny, deleteColParam
		delCol.responses = []response{ok(defStatus), unauthorized}
		ops = append(ops, delCol)
	}
	eps := []endpoint{{path: collection, groupPath: gp, pathParams: collParams, ops: ops}}

	read := op("get", "get", id("read", ""), "read the specified "+r.Kind)
	read.responses = []response{ok(kindDef), unauthorized}
	replace := op("put", "put", id("replace", ""), "replace the specified "+r.Kind)
	replace.body, replace.consumes, replace.query = kindDef, consumesAny, writeParams
	replace.responses = []response{ok(kindDef), created(kindDef), unauthorized}
	patch := op("patch", "patch", id("patch", ""), "partially update the specified "+r.Kind)
	patch.body, patch.consumes, patch.query = defPatch, consumesPatch, patchParams
	patch.responses = []response{ok(kindDef), created(kindDef), unauthorized}
	del := op("delete", "delete", id("delete", ""), "delete "+article(r.Kind))
	del.body, del.consumes, del.query = defDelete, consumesAny, deleteParams
	del.responses = []response{ok(defStatus), accepted(defStatus), unauthorized}
	eps = append(eps, endpoint{path: item, groupPath: gp, pathParams: itemParams, ops: []operation{read, replace, patch, del}})

	sub := func(name, suffix, def string, kind *gvk) endpoint {
		read := op("get", "get", id("read", suffix), "read "+name+" of the specified "+r.Kind)
		read.gvk, read.responses = kind, []response{ok(def), unauthorized}
		replace := op("put", "put", id("replace", suffix), "replace "+name+" of the specified "+r.Kind)
		replace.gvk, replace.body, replace.consumes, replace.query = kind, def, consumesAny, writeParams
		replace.responses = []response{ok(def), created(def), unauthorized}
		patch := op("patch", "patch", id("patch", suffix), "partially update "+name+" of the specified "+r.Kind)
		patch.gvk, patch.body, patch.consumes, patch.query = kind, defPatch, consumesPatch, patchParams
		patch.responses = []response{ok(def), created(def), unauthorized}
		return endpoint{path: item + "/" + name, groupPath: gp, pathParams: itemParams, ops: []operation{read, replace, patch}}
	}
	if r.Status {
		eps = append(eps, sub("status", "Status", kindDef, kind))
	}
	if r.Scale != nil {
		eps = append(eps, sub("scale", "Scale", defScale, &gvk{Group: "autoscaling", Version: "v1", Kind: "Scale"}))
	}
	eps = append(eps, extraSubresources(r, item, gp, itemParams, op)...)

	watch := op("get", "watch", id("watch", ""), "watch changes to an object of kind "+r.Kind+". deprecated: use the 'watch' parameter with a list operation instead, filtered to a single item with the 'fieldSelector' parameter.")
	watch.produces, watch.query, watch.responses = producesList, listParams, []response{ok(defWatchEvent), unauthorized}
	watchList := op("get", "watchlist", id("watch", "List"), "watch individual changes to a list of "+r.Kind+". deprecated: use the 'watch' parameter with a list operation instead.")
	watchList.produces, watchList.query, watchList.responses = producesList, listParams, []response{ok(defWatchEvent), unauthorized}
	eps = append(eps,
		endpoint{path: prefix + "/watch" + nsPath + "/" + r.Resource, groupPath: gp, pathParams: collParams, ops: []operation{watchList}},
		endpoint{path: prefix + "/watch" + nsPath + "/" + r.Resource + "/{name}", groupPath: gp, pathParams: itemParams, ops: []operation{watch}})

	if r.Namespaced {
		all := "ForAllNamespaces"
		listAll := op("get", "list", "list"+idPart+r.Kind+all, "list or watch objects of kind "+r.Kind)
		listAll.produces, listAll.query, listAll.responses = producesList, listParams, []response{ok(listDef), unauthorized}
		watchAll := op("get", "watchlist", "watch"+idPart+r.Kind+"List"+all, "watch individual changes to a list of "+r.Kind+". deprecated: use the 'watch' parameter with a list operation instead.")
		watchAll.produces, watchAll.query, watchAll.responses = producesList, listParams, []response{ok(defWatchEvent), unauthorized}
		eps = append(eps,
			endpoint{path: prefix + "/" + r.Resource, groupPath: gp, pathParams: []param{pPretty}, ops: []operation{listAll}},
			endpoint{path: prefix + "/watch/" + r.Resource, groupPath: gp, pathParams: []param{pPretty}, ops: []operation{watchAll}})
	}
	return eps
}

// extraSubresources are the pod and namespace subresources skiff serves
// besides status and scale.
func extraSubresources(r *registry.Resource, item, gp string, itemParams []param, op func(method, action, id, desc string) operation) []endpoint {
	if r.Group != "" || r.Version != "v1" {
		return nil
	}
	switch r.Resource {
	case "pods":
		bind := op("post", "post", "createCoreV1NamespacedPodBinding", "create binding of a Pod")
		bind.gvk = &gvk{Version: "v1", Kind: "Binding"}
		bind.body, bind.consumes, bind.query = defBinding, consumesAny, writeParams
		bind.responses = []response{{code: "200", desc: "OK", def: defBinding}, {code: "201", desc: "Created", def: defBinding}, {code: "202", desc: "Accepted", def: defBinding}, unauthorized}
		logs := op("get", "get", "readCoreV1NamespacedPodLog", "read log of the specified Pod")
		logs.gvk = &gvk{Version: "v1", Kind: "Pod"}
		logs.produces = []string{"text/plain", mimeJSON, mimeYAML, mimeProtobuf}
		logs.query = []param{
			q("container", "string", "The container whose log to stream; may be omitted when the pod has one container."),
			q("follow", "boolean", "Keep streaming the log as it grows."),
			q("insecureSkipTLSVerifyBackend", "boolean", "Do not verify the serving certificate of the kubelet the log is read from."),
			q("limitBytes", "integer", "Stop after this many bytes of log."),
			q("previous", "boolean", "Return the log of the previous, terminated instance of the container."),
			q("sinceSeconds", "integer", "Only lines from this many seconds ago onwards; exclusive with sinceTime."),
			q("stream", "string", "Which stream of the log: All, Stdout or Stderr."),
			q("tailLines", "integer", "Only this many lines from the end of the log."),
			q("timestamps", "boolean", "Prefix every line with its RFC 3339 timestamp."),
		}
		logs.responses = []response{{code: "200", desc: "OK"}, unauthorized}
		return []endpoint{
			{path: item + "/binding", groupPath: gp, pathParams: itemParams, ops: []operation{bind}},
			{path: item + "/log", groupPath: gp, pathParams: itemParams, ops: []operation{logs}},
		}
	case "namespaces":
		fin := op("put", "put", "replaceCoreV1NamespaceFinalize", "replace finalize of the specified Namespace")
		def := "io.k8s.api.core.v1.Namespace"
		fin.body, fin.consumes, fin.query = def, consumesAny, writeParams
		fin.responses = []response{{code: "200", desc: "OK", def: def}, {code: "201", desc: "Created", def: def}, unauthorized}
		return []endpoint{{path: item + "/finalize", groupPath: gp, pathParams: itemParams, ops: []operation{fin}}}
	}
	return nil
}

// resourcesEndpoint is GET /api/v1/ (or /apis/<group>/<version>/): the
// group-version's resource list.
func resourcesEndpoint(group, version string) endpoint {
	gp := groupPath(group, version)
	return endpoint{path: "/" + gp + "/", groupPath: gp, ops: []operation{{
		method: "get", id: "get" + groupCamel(group) + upperFirst(version) + "APIResources",
		desc: "get available resources", tag: lowerFirst(groupCamel(group)) + "_" + version,
		produces:  []string{mimeJSON, mimeYAML, mimeProtobuf},
		responses: []response{{code: "200", desc: "OK", def: defResources}, unauthorized},
	}}}
}

func article(kind string) string {
	if strings.ContainsRune("AEIOU", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

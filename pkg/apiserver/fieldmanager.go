package apiserver

import (
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/client-go/applyconfigurations"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/skiff-org/skiff/pkg/registry"
)

// typeConverter knows the structure (list types, map keys) of every built-in
// type, from the schema client-go ships for apply configurations. Building it
// takes most of a second, so it is built once, on first use or by WarmUp,
// never at package init where it would delay every start.
var typeConverter = sync.OnceValue(func() managedfields.TypeConverter {
	return applyconfigurations.NewTypeConverter(Scheme)
})

// WarmUp builds what server-side apply needs; call it in the background at
// start so the first apply does not wait.
func WarmUp() { typeConverter() }

// fieldManagers track managedFields and merge server-side apply patches, one
// for the main resource and one for its status subresource.
type fieldManagers struct {
	main, status *managedfields.FieldManager
}

type defaulter func(runtime.Object)

func (d defaulter) Default(obj runtime.Object) {
	if d != nil {
		d(obj)
	}
}

func newFieldManagers(r *registry.Resource) (*fieldManagers, error) {
	gvk := r.GroupVersionKind()
	apiVersion := fieldpath.APIVersion(gvk.GroupVersion().String())
	var mainReset, statusReset map[fieldpath.APIVersion]fieldpath.Filter
	if r.Status {
		// The main resource may not set status and /status may set nothing else.
		mainReset = map[fieldpath.APIVersion]fieldpath.Filter{
			apiVersion: fieldpath.NewExcludeSetFilter(fieldpath.NewSet(fieldpath.MakePathOrDie("status"))),
		}
		statusReset = map[fieldpath.APIVersion]fieldpath.Filter{
			apiVersion: fieldpath.NewExcludeSetFilter(fieldpath.NewSet(
				fieldpath.MakePathOrDie("spec"), fieldpath.MakePathOrDie("metadata"))),
		}
	}
	d := defaulter(r.Default)
	main, err := managedfields.NewDefaultFieldManager(typeConverter(), Scheme, d, Scheme, gvk, gvk.GroupVersion(), "", mainReset)
	if err != nil {
		return nil, err
	}
	fm := &fieldManagers{main: main}
	if r.Status {
		fm.status, err = managedfields.NewDefaultFieldManager(typeConverter(), Scheme, d, Scheme, gvk, gvk.GroupVersion(), "status", statusReset)
		if err != nil {
			return nil, err
		}
	}
	return fm, nil
}

func (f *fieldManagers) forSub(sub string) *managedfields.FieldManager {
	if sub == "status" && f.status != nil {
		return f.status
	}
	return f.main
}

// managerName is the field manager of a write: the fieldManager parameter,
// else the client's User-Agent up to its first slash, as Kubernetes does.
func managerName(param, userAgent string) string {
	if param != "" {
		return param
	}
	if i := strings.IndexByte(userAgent, '/'); i >= 0 {
		userAgent = userAgent[:i]
	}
	if len(userAgent) > 128 {
		userAgent = userAgent[:128]
	}
	return userAgent
}

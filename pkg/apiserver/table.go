package apiserver

import (
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

var defaultColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	{Name: "Created At", Type: "date", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
}

// toTable renders an object or a list as the rows `kubectl get` prints.
func (s *Server) toTable(res *resource, obj runtime.Object, includeObject string, withColumns bool) (*metav1.Table, error) {
	t := &metav1.Table{}
	t.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("Table"))
	if withColumns {
		if res.Row != nil {
			t.ColumnDefinitions = res.Columns
		} else {
			t.ColumnDefinitions = defaultColumns
		}
	}
	var items []runtime.Object
	if meta.IsListType(obj) {
		var err error
		if items, err = meta.ExtractList(obj); err != nil {
			return nil, err
		}
		if lm, err := meta.ListAccessor(obj); err == nil {
			t.ResourceVersion, t.Continue, t.RemainingItemCount = lm.GetResourceVersion(), lm.GetContinue(), lm.GetRemainingItemCount()
		}
	} else {
		items = []runtime.Object{obj}
		t.ResourceVersion = mustMeta(obj).GetResourceVersion()
	}
	now := s.now()
	t.Rows = make([]metav1.TableRow, 0, len(items))
	for _, it := range items {
		row := metav1.TableRow{}
		if res.Row != nil {
			row.Cells = res.Row(it, now)
		} else {
			m := mustMeta(it)
			row.Cells = []interface{}{m.GetName(), m.GetCreationTimestamp().UTC().Format(time.RFC3339)}
		}
		switch includeObject {
		case "None":
		case "Object":
			it.GetObjectKind().SetGroupVersionKind(res.GroupVersionKind())
			row.Object = runtime.RawExtension{Object: it}
		default:
			row.Object = runtime.RawExtension{Object: partialOf(withKind(res, it))}
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

func withKind(res *resource, obj runtime.Object) runtime.Object {
	if obj.GetObjectKind().GroupVersionKind().Empty() {
		obj = obj.DeepCopyObject()
		obj.GetObjectKind().SetGroupVersionKind(res.GroupVersionKind())
	}
	return obj
}

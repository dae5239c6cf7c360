package registry

import (
	"strings"

	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// nameRule returns how a resource's names are checked: namespaces are DNS-1123
// labels, services DNS-1035 labels (they become DNS names and environment
// variable prefixes), everything else DNS-1123 subdomains.
func nameRule(r *Resource) apimachineryvalidation.ValidateNameFunc {
	switch {
	case r.Group == "" && r.Resource == "namespaces":
		return apimachineryvalidation.ValidateNamespaceName
	case r.Group == "" && r.Resource == "services":
		return apimachineryvalidation.NameIsDNS1035Label
	}
	return apimachineryvalidation.NameIsDNSSubdomain
}

// standardFinalizers may be written without a domain prefix.
var standardFinalizers = map[string]bool{
	string(FinalizerKubernetes):      true,
	metav1.FinalizerOrphanDependents: true,
	metav1.FinalizerDeleteDependents: true,
}

// ValidateObjectMeta checks a new object's metadata: name (and generateName
// prefix) by the resource's naming rule, namespace present iff the resource
// is namespaced, labels, annotations (keys, values and total size), owner
// references and finalizers.
func ValidateObjectMeta(r *Resource, obj metav1.Object) field.ErrorList {
	path := field.NewPath("metadata")
	errs := apimachineryvalidation.ValidateObjectMetaAccessor(obj, r.Namespaced, nameRule(r), path)
	return append(errs, validateFinalizerNames(obj.GetFinalizers(), path.Child("finalizers"))...)
}

// ValidateObjectMetaUpdate checks metadata on update: everything
// ValidateObjectMeta checks, plus that name, namespace, uid,
// creationTimestamp and deletion fields keep their values, generation does
// not go back, and no finalizer is added once deletion has begun. A missing
// resourceVersion is left to the handler, which decides whether an
// unconditional update is allowed.
func ValidateObjectMetaUpdate(r *Resource, obj, old metav1.Object) field.ErrorList {
	path := field.NewPath("metadata")
	var errs field.ErrorList
	for _, e := range apimachineryvalidation.ValidateObjectMetaAccessorUpdate(obj, old, path) {
		if e.Field == "metadata.resourceVersion" {
			continue
		}
		errs = append(errs, e)
	}
	errs = append(errs, apimachineryvalidation.ValidateFinalizers(obj.GetFinalizers(), path.Child("finalizers"))...)
	return append(errs, validateFinalizerNames(obj.GetFinalizers(), path.Child("finalizers"))...)
}

// validateFinalizerNames requires a domain prefix on finalizers other than
// the standard ones.
func validateFinalizerNames(finalizers []string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, f := range finalizers {
		if !strings.Contains(f, "/") && !standardFinalizers[f] {
			errs = append(errs, field.Invalid(fldPath.Index(i), f, "name is neither a standard finalizer name nor is it fully qualified"))
		}
	}
	return errs
}

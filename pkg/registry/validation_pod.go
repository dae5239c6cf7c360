package registry

import (
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	supportedRestartPolicies = []corev1.RestartPolicy{corev1.RestartPolicyAlways, corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure}
	supportedDNSPolicies     = []corev1.DNSPolicy{corev1.DNSClusterFirstWithHostNet, corev1.DNSClusterFirst, corev1.DNSDefault, corev1.DNSNone}
	supportedTaintEffects    = []corev1.TaintEffect{corev1.TaintEffectNoExecute, corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule}
	supportedTolerationOps   = []corev1.TolerationOperator{corev1.TolerationOpEqual, corev1.TolerationOpExists}
	supportedPreemption      = []corev1.PreemptionPolicy{corev1.PreemptLowerPriority, corev1.PreemptNever}
	supportedHostPathTypes   = []corev1.HostPathType{corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory, corev1.HostPathFileOrCreate, corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev}
	supportedUnsatisfiable   = []corev1.UnsatisfiableConstraintAction{corev1.DoNotSchedule, corev1.ScheduleAnyway}
)

const fileModeErrorMsg = "must be a number between 0 and 0777 (octal), both inclusive"

func sortStrings[T ~string](s []T) {
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
}

func validatePodObj(obj, old runtime.Object) field.ErrorList {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	errs := ValidatePodSpec(&pod.Spec, field.NewPath("spec"))
	if o, ok := old.(*corev1.Pod); ok && o != nil {
		errs = append(errs, validatePodUpdate(pod, o)...)
	}
	return errs
}

// ValidatePodSpec checks a pod's spec (also a template's spec).
func ValidatePodSpec(spec *corev1.PodSpec, fldPath *field.Path) field.ErrorList {
	volumes, errs := validateVolumes(spec.Volumes, fldPath.Child("volumes"))
	seen := sets.New[string]()
	errs = append(errs, validateContainers(spec.InitContainers, initContainer, volumes, spec.TerminationGracePeriodSeconds, seen, fldPath.Child("initContainers"))...)
	errs = append(errs, validateContainers(spec.Containers, appContainer, volumes, spec.TerminationGracePeriodSeconds, seen, fldPath.Child("containers"))...)
	errs = append(errs, validateRestartPolicy(spec.RestartPolicy, fldPath.Child("restartPolicy"))...)
	switch {
	case spec.DNSPolicy == "":
		errs = append(errs, field.Required(fldPath.Child("dnsPolicy"), ""))
	case !contains(supportedDNSPolicies, spec.DNSPolicy):
		errs = append(errs, field.NotSupported(fldPath.Child("dnsPolicy"), spec.DNSPolicy, supportedDNSPolicies))
	case spec.DNSPolicy == corev1.DNSNone && spec.DNSConfig == nil:
		errs = append(errs, field.Required(fldPath.Child("dnsConfig"), fmt.Sprintf("must provide `dnsConfig` when `dnsPolicy` is %s", corev1.DNSNone)))
	}
	errs = append(errs, metav1validation.ValidateLabels(spec.NodeSelector, fldPath.Child("nodeSelector"))...)
	if spec.ServiceAccountName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(spec.ServiceAccountName) {
			errs = append(errs, field.Invalid(fldPath.Child("serviceAccountName"), spec.ServiceAccountName, msg))
		}
	}
	if spec.NodeName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(spec.NodeName) {
			errs = append(errs, field.Invalid(fldPath.Child("nodeName"), spec.NodeName, msg))
		}
	}
	if d := spec.ActiveDeadlineSeconds; d != nil && (*d < 1 || *d > math.MaxInt32) {
		errs = append(errs, field.Invalid(fldPath.Child("activeDeadlineSeconds"), *d, validation.InclusiveRangeError(1, math.MaxInt32)))
	}
	if spec.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(spec.Hostname) {
			errs = append(errs, field.Invalid(fldPath.Child("hostname"), spec.Hostname, msg))
		}
	}
	if spec.Subdomain != "" {
		for _, msg := range validation.IsDNS1123Label(spec.Subdomain) {
			errs = append(errs, field.Invalid(fldPath.Child("subdomain"), spec.Subdomain, msg))
		}
	}
	errs = append(errs, validateTolerations(spec.Tolerations, fldPath.Child("tolerations"))...)
	if spec.HostNetwork {
		errs = append(errs, validateHostNetworkPorts(spec, fldPath)...)
	}
	if p := spec.PreemptionPolicy; p != nil && !contains(supportedPreemption, *p) {
		errs = append(errs, field.NotSupported(fldPath.Child("preemptionPolicy"), *p, supportedPreemption))
	}
	for i, g := range spec.ReadinessGates {
		for _, msg := range validation.IsQualifiedName(string(g.ConditionType)) {
			errs = append(errs, field.Invalid(fldPath.Child("readinessGates").Index(i).Child("conditionType"), string(g.ConditionType), msg))
		}
	}
	errs = append(errs, validateTopologySpread(spec.TopologySpreadConstraints, fldPath.Child("topologySpreadConstraints"))...)
	errs = append(errs, validateAffinity(spec.Affinity, fldPath.Child("affinity"))...)
	return errs
}

func validateRestartPolicy(p corev1.RestartPolicy, fldPath *field.Path) field.ErrorList {
	if p == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	if !contains(supportedRestartPolicies, p) {
		return field.ErrorList{field.NotSupported(fldPath, p, supportedRestartPolicies)}
	}
	return nil
}

func validateHostNetworkPorts(spec *corev1.PodSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	check := func(cs []corev1.Container, path *field.Path) {
		for i, c := range cs {
			for j, p := range c.Ports {
				if p.HostPort != p.ContainerPort {
					errs = append(errs, field.Invalid(path.Index(i).Child("ports").Index(j).Child("containerPort"), p.ContainerPort, "must match `hostPort` when `hostNetwork` is true"))
				}
			}
		}
	}
	check(spec.InitContainers, fldPath.Child("initContainers"))
	check(spec.Containers, fldPath.Child("containers"))
	return errs
}

// volumeSources returns the JSON names of the sources set in vs, in field
// order.
func volumeSources(vs *corev1.VolumeSource) []string {
	var names []string
	v := reflect.ValueOf(vs).Elem()
	t := v.Type()
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			names = append(names, strings.Split(t.Field(i).Tag.Get("json"), ",")[0])
		}
	}
	return names
}

func countVolumeSources(vs *corev1.VolumeSource) int { return len(volumeSources(vs)) }

func validateVolumes(volumes []corev1.Volume, fldPath *field.Path) (map[string]bool, field.ErrorList) {
	var errs field.ErrorList
	names := map[string]bool{}
	for i := range volumes {
		v := &volumes[i]
		idx := fldPath.Index(i)
		switch {
		case v.Name == "":
			errs = append(errs, field.Required(idx.Child("name"), ""))
		case names[v.Name]:
			errs = append(errs, field.Duplicate(idx.Child("name"), v.Name))
		default:
			for _, msg := range validation.IsDNS1123Label(v.Name) {
				errs = append(errs, field.Invalid(idx.Child("name"), v.Name, msg))
			}
		}
		if v.Name != "" {
			names[v.Name] = true
		}
		errs = append(errs, validateVolumeSource(&v.VolumeSource, idx)...)
	}
	return names, errs
}

func validateVolumeSource(vs *corev1.VolumeSource, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	sources := volumeSources(vs)
	if len(sources) == 0 {
		return field.ErrorList{field.Required(fldPath, "must specify a volume type")}
	}
	for _, extra := range sources[1:] {
		errs = append(errs, field.Forbidden(fldPath.Child(extra), "may not specify more than 1 volume type"))
	}
	mode := func(m *int32, p *field.Path) {
		if m != nil && (*m < 0 || *m > 0o777) {
			errs = append(errs, field.Invalid(p, *m, fileModeErrorMsg))
		}
	}
	items := func(items []corev1.KeyToPath, p *field.Path) {
		for i, it := range items {
			ip := p.Index(i)
			if it.Key == "" {
				errs = append(errs, field.Required(ip.Child("key"), ""))
			}
			if it.Path == "" {
				errs = append(errs, field.Required(ip.Child("path"), ""))
			} else {
				errs = append(errs, validateLocalDescendingPath(it.Path, ip.Child("path"))...)
			}
			mode(it.Mode, ip.Child("mode"))
		}
	}
	switch {
	case vs.ConfigMap != nil:
		p := fldPath.Child("configMap")
		if vs.ConfigMap.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		}
		mode(vs.ConfigMap.DefaultMode, p.Child("defaultMode"))
		items(vs.ConfigMap.Items, p.Child("items"))
	case vs.Secret != nil:
		p := fldPath.Child("secret")
		if vs.Secret.SecretName == "" {
			errs = append(errs, field.Required(p.Child("secretName"), ""))
		}
		mode(vs.Secret.DefaultMode, p.Child("defaultMode"))
		items(vs.Secret.Items, p.Child("items"))
	case vs.HostPath != nil:
		p := fldPath.Child("hostPath")
		if vs.HostPath.Path == "" {
			errs = append(errs, field.Required(p.Child("path"), ""))
		}
		if t := vs.HostPath.Type; t != nil && !contains(supportedHostPathTypes, *t) {
			errs = append(errs, field.NotSupported(p.Child("type"), *t, supportedHostPathTypes))
		}
	case vs.EmptyDir != nil:
		if l := vs.EmptyDir.SizeLimit; l != nil && l.Sign() < 0 {
			errs = append(errs, field.Forbidden(fldPath.Child("emptyDir", "sizeLimit"), "SizeLimit field must be a valid resource quantity"))
		}
		if m := vs.EmptyDir.Medium; m != corev1.StorageMediumDefault && m != corev1.StorageMediumMemory && !strings.HasPrefix(string(m), string(corev1.StorageMediumHugePages)) {
			errs = append(errs, field.NotSupported(fldPath.Child("emptyDir", "medium"), m, []corev1.StorageMedium{corev1.StorageMediumDefault, corev1.StorageMediumMemory, corev1.StorageMediumHugePages}))
		}
	case vs.PersistentVolumeClaim != nil:
		if vs.PersistentVolumeClaim.ClaimName == "" {
			errs = append(errs, field.Required(fldPath.Child("persistentVolumeClaim", "claimName"), ""))
		}
	case vs.DownwardAPI != nil:
		p := fldPath.Child("downwardAPI")
		mode(vs.DownwardAPI.DefaultMode, p.Child("defaultMode"))
		for i, it := range vs.DownwardAPI.Items {
			if it.Path == "" {
				errs = append(errs, field.Required(p.Child("items").Index(i).Child("path"), ""))
			}
		}
	case vs.Projected != nil:
		mode(vs.Projected.DefaultMode, fldPath.Child("projected", "defaultMode"))
	}
	return errs
}

func validateTolerations(ts []corev1.Toleration, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, t := range ts {
		idx := fldPath.Index(i)
		if t.Key != "" {
			errs = append(errs, metav1validation.ValidateLabelName(t.Key, idx.Child("key"))...)
		}
		if t.Key == "" && t.Operator != corev1.TolerationOpExists {
			errs = append(errs, field.Invalid(idx.Child("operator"), t.Operator, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
		}
		if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
			errs = append(errs, field.Invalid(idx.Child("effect"), t.Effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
		}
		switch t.Operator {
		case corev1.TolerationOpEqual, "":
			if msgs := validation.IsValidLabelValue(t.Value); len(msgs) > 0 {
				errs = append(errs, field.Invalid(idx.Child("operator"), t.Value, strings.Join(msgs, ";")))
			}
		case corev1.TolerationOpExists:
			if t.Value != "" {
				errs = append(errs, field.Invalid(idx.Child("operator"), t, "value must be empty when `operator` is 'Exists'"))
			}
		default:
			errs = append(errs, field.NotSupported(idx.Child("operator"), t.Operator, supportedTolerationOps))
		}
		if t.Effect != "" && !contains(supportedTaintEffects, t.Effect) {
			errs = append(errs, field.NotSupported(idx.Child("effect"), t.Effect, supportedTaintEffects))
		}
	}
	return errs
}

func validateTopologySpread(cs []corev1.TopologySpreadConstraint, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, c := range cs {
		idx := fldPath.Index(i)
		if c.MaxSkew <= 0 {
			errs = append(errs, field.Invalid(idx.Child("maxSkew"), c.MaxSkew, "must be greater than zero"))
		}
		if c.TopologyKey == "" {
			errs = append(errs, field.Required(idx.Child("topologyKey"), "can not be empty"))
		} else {
			errs = append(errs, metav1validation.ValidateLabelName(c.TopologyKey, idx.Child("topologyKey"))...)
		}
		if !contains(supportedUnsatisfiable, c.WhenUnsatisfiable) {
			errs = append(errs, field.NotSupported(idx.Child("whenUnsatisfiable"), c.WhenUnsatisfiable, supportedUnsatisfiable))
		}
		if c.LabelSelector != nil {
			errs = append(errs, metav1validation.ValidateLabelSelector(c.LabelSelector, metav1validation.LabelSelectorValidationOptions{}, idx.Child("labelSelector"))...)
		}
	}
	return errs
}

var supportedNodeSelectorOps = []corev1.NodeSelectorOperator{corev1.NodeSelectorOpDoesNotExist, corev1.NodeSelectorOpExists, corev1.NodeSelectorOpGt, corev1.NodeSelectorOpIn, corev1.NodeSelectorOpLt, corev1.NodeSelectorOpNotIn}

func validateAffinity(a *corev1.Affinity, fldPath *field.Path) field.ErrorList {
	if a == nil {
		return nil
	}
	var errs field.ErrorList
	if na := a.NodeAffinity; na != nil {
		p := fldPath.Child("nodeAffinity")
		if req := na.RequiredDuringSchedulingIgnoredDuringExecution; req != nil {
			rp := p.Child("requiredDuringSchedulingIgnoredDuringExecution")
			if len(req.NodeSelectorTerms) == 0 {
				errs = append(errs, field.Required(rp.Child("nodeSelectorTerms"), "must have at least one node selector term"))
			}
			for i, t := range req.NodeSelectorTerms {
				errs = append(errs, validateNodeSelectorTerm(t, rp.Child("nodeSelectorTerms").Index(i))...)
			}
		}
		for i, t := range na.PreferredDuringSchedulingIgnoredDuringExecution {
			tp := p.Child("preferredDuringSchedulingIgnoredDuringExecution").Index(i)
			if t.Weight <= 0 || t.Weight > 100 {
				errs = append(errs, field.Invalid(tp.Child("weight"), t.Weight, "must be in the range 1-100"))
			}
			errs = append(errs, validateNodeSelectorTerm(t.Preference, tp.Child("preference"))...)
		}
	}
	podTerm := func(t corev1.PodAffinityTerm, tp *field.Path) {
		if t.TopologyKey == "" {
			errs = append(errs, field.Required(tp.Child("topologyKey"), "can not be empty"))
		} else {
			errs = append(errs, metav1validation.ValidateLabelName(t.TopologyKey, tp.Child("topologyKey"))...)
		}
		if t.LabelSelector != nil {
			errs = append(errs, metav1validation.ValidateLabelSelector(t.LabelSelector, metav1validation.LabelSelectorValidationOptions{}, tp.Child("labelSelector"))...)
		}
	}
	podTerms := func(terms []corev1.PodAffinityTerm, p *field.Path) {
		for i, t := range terms {
			podTerm(t, p.Index(i))
		}
	}
	weighted := func(terms []corev1.WeightedPodAffinityTerm, p *field.Path) {
		for i, t := range terms {
			if t.Weight <= 0 || t.Weight > 100 {
				errs = append(errs, field.Invalid(p.Index(i).Child("weight"), t.Weight, "must be in the range 1-100"))
			}
			podTerm(t.PodAffinityTerm, p.Index(i).Child("podAffinityTerm"))
		}
	}
	if pa := a.PodAffinity; pa != nil {
		podTerms(pa.RequiredDuringSchedulingIgnoredDuringExecution, fldPath.Child("podAffinity", "requiredDuringSchedulingIgnoredDuringExecution"))
		weighted(pa.PreferredDuringSchedulingIgnoredDuringExecution, fldPath.Child("podAffinity", "preferredDuringSchedulingIgnoredDuringExecution"))
	}
	if pa := a.PodAntiAffinity; pa != nil {
		podTerms(pa.RequiredDuringSchedulingIgnoredDuringExecution, fldPath.Child("podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution"))
		weighted(pa.PreferredDuringSchedulingIgnoredDuringExecution, fldPath.Child("podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution"))
	}
	return errs
}

func validateNodeSelectorTerm(t corev1.NodeSelectorTerm, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, r := range t.MatchExpressions {
		rp := fldPath.Child("matchExpressions").Index(i)
		errs = append(errs, metav1validation.ValidateLabelName(r.Key, rp.Child("key"))...)
		switch r.Operator {
		case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
			if len(r.Values) == 0 {
				errs = append(errs, field.Required(rp.Child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
			}
		case corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist:
			if len(r.Values) > 0 {
				errs = append(errs, field.Forbidden(rp.Child("values"), "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
			}
		case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
			if len(r.Values) != 1 {
				errs = append(errs, field.Required(rp.Child("values"), "must be specified single value when `operator` is 'Lt' or 'Gt'"))
			}
		default:
			errs = append(errs, field.NotSupported(rp.Child("operator"), r.Operator, supportedNodeSelectorOps))
		}
	}
	return errs
}

// podUpdateForbiddenMsg is Kubernetes' wording for a pod update that changes
// more than the mutable fields.
const podUpdateForbiddenMsg = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"

// validatePodUpdate allows only images, activeDeadlineSeconds, added
// tolerations, removed scheduling gates and the binding of an unbound pod to
// a node to change in a pod's spec.
func validatePodUpdate(pod, old *corev1.Pod) field.ErrorList {
	var errs field.ErrorList
	specPath := field.NewPath("spec")
	if len(pod.Spec.Containers) != len(old.Spec.Containers) {
		return field.ErrorList{field.Forbidden(specPath.Child("containers"), "pod updates may not add or remove containers")}
	}
	if len(pod.Spec.InitContainers) != len(old.Spec.InitContainers) {
		return field.ErrorList{field.Forbidden(specPath.Child("initContainers"), "pod updates may not add or remove containers")}
	}
	if d := old.Spec.ActiveDeadlineSeconds; d != nil {
		nd := pod.Spec.ActiveDeadlineSeconds
		if nd == nil {
			errs = append(errs, field.Invalid(specPath.Child("activeDeadlineSeconds"), nd, "must be specified when it was previously set"))
		} else if *nd > *d {
			errs = append(errs, field.Invalid(specPath.Child("activeDeadlineSeconds"), *nd, "must be less than or equal to previous value"))
		}
	}
	errs = append(errs, validateOnlyAddedTolerations(pod.Spec.Tolerations, old.Spec.Tolerations, specPath.Child("tolerations"))...)
	for i, g := range pod.Spec.SchedulingGates {
		found := false
		for _, og := range old.Spec.SchedulingGates {
			found = found || og.Name == g.Name
		}
		if !found {
			errs = append(errs, field.Forbidden(specPath.Child("schedulingGates").Index(i), "only deletion is allowed, but found new scheduling gate '"+g.Name+"'"))
		}
	}

	munged := pod.Spec.DeepCopy()
	for i := range munged.Containers {
		munged.Containers[i].Image = old.Spec.Containers[i].Image
	}
	for i := range munged.InitContainers {
		munged.InitContainers[i].Image = old.Spec.InitContainers[i].Image
	}
	munged.ActiveDeadlineSeconds = old.Spec.ActiveDeadlineSeconds
	munged.Tolerations = old.Spec.Tolerations
	munged.SchedulingGates = old.Spec.SchedulingGates
	// The binding subresource goes through this check too: an unbound pod
	// may get a node; a bound pod keeps its node.
	if old.Spec.NodeName == "" {
		munged.NodeName = ""
	}
	if g := old.Spec.TerminationGracePeriodSeconds; g != nil && *g < 0 &&
		munged.TerminationGracePeriodSeconds != nil && *munged.TerminationGracePeriodSeconds == 1 {
		munged.TerminationGracePeriodSeconds = g
	}
	if !equality.Semantic.DeepEqual(*munged, old.Spec) {
		diff := cmp.Diff(old.Spec, *munged)
		errs = append(errs, field.Forbidden(specPath, podUpdateForbiddenMsg+"\n"+diff))
	}
	return errs
}

// validateOnlyAddedTolerations lets existing tolerations stay (their
// tolerationSeconds may shrink) and new ones be added.
func validateOnlyAddedTolerations(ts, old []corev1.Toleration, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, o := range old {
		found := false
		oc := o
		oc.TolerationSeconds = nil
		for _, t := range ts {
			tc := t
			tc.TolerationSeconds = nil
			if reflect.DeepEqual(tc, oc) {
				found = true
				break
			}
		}
		if !found {
			errs = append(errs, field.Forbidden(fldPath, "existing toleration can not be modified except its tolerationSeconds"))
			return errs
		}
	}
	return errs
}

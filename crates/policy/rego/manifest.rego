# Rules over one Kubernetes object: input.object, plus input.siblings (the pod
# label sets of the workloads written beside it, which tell a blue-green
# Service apart). Each finding names the rule and the field it is about, so the
# caller can point at the line.
package bulkhead.manifest

import data.bulkhead.lib.images
import rego.v1

config := data.bulkhead.config

workload_kinds := {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}

pod_spec_path := ["spec", "template", "spec"] if input.object.kind in workload_kinds

pod_spec_path := ["spec", "jobTemplate", "spec", "template", "spec"] if input.object.kind == "CronJob"

pod_spec_path := ["spec"] if input.object.kind == "Pod"

pod_spec := input.object.spec.template.spec if input.object.kind in workload_kinds

pod_spec := input.object.spec.jobTemplate.spec.template.spec if input.object.kind == "CronJob"

pod_spec := input.object.spec if input.object.kind == "Pod"

containers contains {"container": container, "field": array.concat(pod_spec_path, [key, i]), "init": key != "containers"} if {
	some key in ["containers", "initContainers", "ephemeralContainers"]
	listed := pod_spec[key]
	collection(listed)
	some i, container in listed
	is_object(container)
}

collection(x) if is_array(x)

collection(x) if is_object(x)

collection(x) if is_set(x)

what(c) := sprintf("%s %s: container %s", [input.object.kind, name_of(input.object.metadata), name_of(c.container)])

# Never a builtin's type error on an ill-typed object: the compiled rules
# would fail the body where the interpreter stops with an error.
name_of(x) := object.get(x, "name", "?") if is_object(x)

else := "?"

# Every container image, parsed once for all the image rules.
container_images contains {"container": c, "image": image, "ref": images.parse(image)} if {
	some c in containers
	image := c.container.image
	is_string(image)
}

deny contains {
	"rule": "image-tag",
	"msg": sprintf("%s: image %s floats on latest (%s); pin a version", [what(c), image, reason]),
	"field": array.concat(c.field, ["image"]),
	"image": image,
} if {
	some ci in container_images
	c := ci.container
	image := ci.image
	pin := images.pinning(ci.ref)
	pin in {"latest", "none"}
	reason := {"latest": "explicit :latest tag", "none": "no tag"}[pin]
}

warn contains {
	"rule": "image-digest",
	"msg": sprintf("%s: image %s is not pinned by digest", [what(c), image]),
	"field": array.concat(c.field, ["image"]),
	"image": image,
} if {
	some ci in container_images
	ci.ref.digest == ""
	c := ci.container
	image := ci.image
}

deny contains {
	"rule": "allowed-registries",
	"msg": sprintf("%s: image %s is not from an allowed registry (%s)", [what(c), image, concat(", ", allowed)]),
	"field": array.concat(c.field, ["image"]),
	"image": image,
} if {
	allowed := object.get(config, "allowed_registries", [])
	count(allowed) > 0
	some ci in container_images
	not images.under_any(ci.ref.name, allowed)
	c := ci.container
	image := ci.image
}

deny contains {
	"rule": "container-limits",
	"msg": sprintf("%s has no resource limits (resources.limits.cpu or memory)", [what(c)]),
	"field": c.field,
} if {
	some c in containers
	not c.init
	not has_limits(c.container)
}

has_limits(container) if {
	some key in ["cpu", "memory"]
	container.resources.limits[key] != null
}

version_label := object.get(config, "version_label", "version")

deny contains {
	"rule": "blue-green-selector",
	"msg": sprintf("Service %s selects blue-green pools but its selector lacks the %s label, so it sends traffic to every pool", [input.object.metadata.name, version_label]),
	"field": ["spec", "selector"],
} if {
	input.object.kind == "Service"
	spec := object.get(input.object, "spec", {})
	is_object(spec)
	selector := object.get(spec, "selector", {})
	is_object(selector)
	count(selector) > 0
	not selector[version_label]
	blue_green(selector)
}

blue_green(_) if input.object.metadata.annotations["bulkhead.io/strategy"] == "blue-green"

blue_green(selector) if {
	some labels in object.get(input, "siblings", [])
	labels[version_label]
	every key, value in selector {
		labels[key] == value
	}
}

findings := {"deny": deny, "warn": warn}

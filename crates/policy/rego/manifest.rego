# Rules over one Kubernetes object: input.object, plus input.siblings (the pod
# label sets of the workloads written beside it, which tell a blue-green
# Service apart). Each finding names the rule and the field it is about, so the
# caller can point at the line.
#
# The admission webhook evaluates `findings` for every review, as regorus
# bytecode, where a rule or function call costs as much as a dozen expressions.
# So the containers are gathered once by one comprehension, the rules read
# them without helper calls, a check that fails for most objects comes first
# in its body, and what only a finding needs (its message, its field path) is
# built in the rule head, after the body has matched.
package bulkhead.manifest

import data.bulkhead.lib.images
import rego.v1

# Where each kind keeps its pod spec.
pod_spec_paths := {
	"Deployment": ["spec", "template", "spec"],
	"StatefulSet": ["spec", "template", "spec"],
	"DaemonSet": ["spec", "template", "spec"],
	"ReplicaSet": ["spec", "template", "spec"],
	"ReplicationController": ["spec", "template", "spec"],
	"Job": ["spec", "template", "spec"],
	"CronJob": ["spec", "jobTemplate", "spec", "template", "spec"],
	"Pod": ["spec"],
}

# Every container of the pod spec that is an object, with the list it is in
# (`key`) and its place there (`index`), which make up its field path.
containers := [{"container": container, "key": key, "index": i} |
	pod_spec := object.get(input.object, pod_spec_paths[input.object.kind], null)
	some key in ["containers", "initContainers", "ephemeralContainers"]
	listed := pod_spec[key]
	type_name(listed) in {"array", "object", "set"}
	some i, container in listed
	is_object(container)
]

# "Pod web", the start of every container finding's message. A name that is
# missing, or metadata that is not an object, reads "?".
subject := sprintf("%s %s", [input.object.kind, object.get({"metadata": input.object.metadata}, ["metadata", "name"], "?")])

# The containers whose image has no digest (the part after the first "@"):
# every image rule starts from these, so a pinned image costs one split.
unpinned := [{"container": c, "image": image, "reference": at[0]} |
	some c in containers
	image := c.container.image
	is_string(image)
	at := split(image, "@")
	not at[1] != ""
]

deny contains {
	"rule": "image-tag",
	"msg": sprintf("%s: container %s: image %s floats on latest (%s); pin a version", [subject, object.get(u.container.container, "name", "?"), u.image, reason]),
	"field": array.concat(pod_spec_paths[input.object.kind], [u.container.key, u.container.index, "image"]),
	"image": u.image,
} if {
	some u in unpinned
	segments := split(u.reference, "/")
	last := split(segments[count(segments) - 1], ":")

	# The tag (after the first ":" of the last component) is "latest" or missing.
	reason := {"latest": "explicit :latest tag", "": "no tag"}[concat("", array.slice(last, 1, 2))]
}

warn contains {
	"rule": "image-digest",
	"msg": sprintf("%s: container %s: image %s is not pinned by digest", [subject, object.get(u.container.container, "name", "?"), u.image]),
	"field": array.concat(pod_spec_paths[input.object.kind], [u.container.key, u.container.index, "image"]),
	"image": u.image,
} if {
	some u in unpinned
}

deny contains {
	"rule": "allowed-registries",
	"msg": sprintf("%s: container %s: image %s is not from an allowed registry (%s)", [subject, object.get(c.container, "name", "?"), image, concat(", ", allowed)]),
	"field": array.concat(pod_spec_paths[input.object.kind], [c.key, c.index, "image"]),
	"image": image,
} if {
	allowed := data.bulkhead.config.allowed_registries
	count(allowed) > 0
	some c in containers
	image := c.container.image
	is_string(image)
	not images.under_any(images.parse(image).name, allowed)
}

deny contains {
	"rule": "container-limits",
	"msg": sprintf("%s: container %s has no resource limits (resources.limits.cpu or memory)", [subject, object.get(c.container, "name", "?")]),
	"field": array.concat(pod_spec_paths[input.object.kind], [c.key, c.index]),
} if {
	some c in containers
	c.key == "containers"

	# Neither limit is set to something other than null.
	not c.container.resources.limits.cpu != null
	not c.container.resources.limits.memory != null
}

version_label := object.get(data.bulkhead.config, "version_label", "version")

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

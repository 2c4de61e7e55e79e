# Rules over one service of the fleet graph: input.service is the service as
# `bulkhead scan --json` prints it, input.base_images the final-stage FROM of
# its Dockerfiles with the line they are written on. Findings carry `at`.
package bulkhead.service

import data.bulkhead.lib.images
import rego.v1

config := data.bulkhead.config

declared := input.service.declared_at[0] if count(input.service.declared_at) > 0

else := null

deny contains {
	"rule": "approved-base",
	"msg": sprintf("service %s builds on %s, which is not an approved base image (%s)", [input.service.name, base.image, concat(", ", approved)]),
	"at": base.at,
	"image": base.image,
} if {
	approved := object.get(config, "approved_base_prefixes", [])
	count(approved) > 0
	some base in input.base_images
	not images.under_any(images.parse(base.image).name, approved)
}

deny contains {
	"rule": "image-tag",
	"msg": sprintf("service %s: base image %s floats on latest; pin a version", [input.service.name, base.image]),
	"at": base.at,
	"image": base.image,
} if {
	some base in input.base_images
	images.pinning(images.parse(base.image)) in {"latest", "none"}
}

warn contains {
	"rule": "image-digest",
	"msg": sprintf("service %s: base image %s is not pinned by digest", [input.service.name, base.image]),
	"at": base.at,
	"image": base.image,
} if {
	some base in input.base_images
	images.parse(base.image).digest == ""
}

deny contains {
	"rule": "catalog-metadata",
	"msg": sprintf("service %s has no %s in its catalog entry (catalog-info.yaml)", [input.service.name, field]),
	"at": declared,
} if {
	some field in ["owner", "tier"]
	object.get(input.service, field, null) == null
}

governed_kinds := {"gitlab-project", "gitlab-component", "github-workflow"}

governed(source) if count(object.get(config.templates, "sources", [])) == 0

governed(source) if {
	some s in config.templates.sources
	source == s
}

governed(source) if {
	some s in config.templates.sources
	endswith(source, concat("", ["/", s]))
}

major(version) := to_number(split(trim_prefix(version, "v"), ".")[0])

deny contains {
	"rule": "template-window",
	"msg": sprintf("service %s pins %s at %s, outside the support window (%d major line(s) back from %s)", [input.service.name, pin.source, pin.version, window, latest]),
	"at": pin.at,
} if {
	latest := config.templates.latest
	window := object.get(config.templates, "window", 1)
	some pin in input.service.templates
	pin.kind in governed_kinds
	governed(pin.source)
	released(pin.version)
	major(pin.version) < major(latest) - window
}

warn contains {
	"rule": "template-window",
	"msg": sprintf("service %s pins %s at %s, which is not a release version", [input.service.name, pin.source, version]),
	"at": pin.at,
} if {
	config.templates.latest
	some pin in input.service.templates
	pin.kind in governed_kinds
	governed(pin.source)
	version := object.get(pin, "version", null)
	not released(version)
}

# A release version: `^v?[0-9]+\.[0-9]+\.[0-9]+$`, checked without a regular
# expression because regorus compiles the pattern again on every call (about
# half of the service rules' time over a fleet).
released(version) if {
	is_string(version)
	parts := split(trim_prefix(version, "v"), ".")
	count(parts) == 3
	every part in parts {
		part != ""
		trim_left(part, "0123456789") == ""
	}
}

findings := {"deny": deny, "warn": warn}

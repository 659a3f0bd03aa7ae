{{/*
A small TOML writer. Helm's own toToml writes every number as a float (values arrive as
float64), so `quorum = 2.0`; this one writes integral numbers as integers, and the file reads
like the hand-written examples/pipeline.toml. Called with (dict "path" "" "table" $dict).
*/}}
{{- define "tribunal.toml.value" -}}
{{- if kindIs "string" . -}}
{{- printf "%q" . -}}
{{- else if kindIs "bool" . -}}
{{- ternary "true" "false" . -}}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (float64 .) (float64 (int64 .)) -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) -}}
{{- . -}}
{{- else if kindIs "slice" . -}}
[{{- range $i, $e := . -}}{{- if $i }}, {{ end -}}{{- include "tribunal.toml.value" $e -}}{{- end -}}]
{{- else if kindIs "map" . -}}
{ {{- range $i, $k := keys . | sortAlpha -}}{{- if $i }}, {{ end -}}{{ printf "%q" $k }} = {{ include "tribunal.toml.value" (index $ $k) }}{{- end -}} }
{{- else -}}
{{- fail (printf "cannot write %v (%s) as TOML" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{- define "tribunal.toml.isTableList" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) (kindIs "map" (first .)) -}}yes{{- end -}}
{{- end -}}

{{- define "tribunal.toml.table" -}}
{{- $path := .path -}}
{{- $table := .table -}}
{{- range $k := keys $table | sortAlpha -}}
{{- $v := index $table $k -}}
{{- if not (or (kindIs "map" $v) (include "tribunal.toml.isTableList" $v) (kindIs "invalid" $v)) }}
{{ $k }} = {{ include "tribunal.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $k := keys $table | sortAlpha -}}
{{- $v := index $table $k -}}
{{- $sub := ternary $k (printf "%s.%s" $path $k) (eq $path "") -}}
{{- if kindIs "map" $v }}

[{{ $sub }}]
{{- include "tribunal.toml.table" (dict "path" $sub "table" $v) -}}
{{- else if include "tribunal.toml.isTableList" $v -}}
{{- range $v }}

[[{{ $sub }}]]
{{- include "tribunal.toml.table" (dict "path" $sub "table" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

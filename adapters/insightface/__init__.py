"""InsightFace formats and components: RecordIO, .bin sets, loaders, margin heads, backbones, verification."""

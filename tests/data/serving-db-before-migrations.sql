-- The serving database as main created it before migrations (commit f05d339): what an
-- upgrade starts from. Captured from SQLite's own schema table.
CREATE TABLE predictions (
	id INTEGER NOT NULL,
	at DOUBLE NOT NULL,
	request_id TEXT NOT NULL,
	model VARCHAR(128) NOT NULL,
	variant VARCHAR(32) NOT NULL,
	version INTEGER,
	status INTEGER NOT NULL,
	latency_ms DOUBLE NOT NULL,
	infra BOOLEAN NOT NULL,
	prediction DOUBLE,
	revision BIGINT,
	replica VARCHAR(128) NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX ix_predictions_model_at ON predictions (model, at);
CREATE INDEX ix_predictions_request_id ON predictions (request_id);
CREATE TABLE feedback (
	id INTEGER NOT NULL,
	at DOUBLE NOT NULL,
	request_id TEXT NOT NULL,
	label DOUBLE NOT NULL,
	replica VARCHAR(128) NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX ix_feedback_request_id ON feedback (request_id);
CREATE TABLE shadow_comparisons (
	id INTEGER NOT NULL,
	at DOUBLE NOT NULL,
	model VARCHAR(128) NOT NULL,
	version INTEGER NOT NULL,
	result VARCHAR(16) NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX ix_shadow_model_at ON shadow_comparisons (model, at);
CREATE TABLE serving_state (
	model VARCHAR(128) NOT NULL,
	revision BIGINT NOT NULL,
	pins TEXT NOT NULL,
	policy TEXT NOT NULL,
	analysis_since DOUBLE NOT NULL,
	analysis_revision BIGINT NOT NULL,
	updated_at DOUBLE NOT NULL,
	updated_by VARCHAR(256) NOT NULL,
	PRIMARY KEY (model)
);
CREATE TABLE serving_events (
	id INTEGER NOT NULL,
	model VARCHAR(128) NOT NULL,
	revision BIGINT NOT NULL,
	at DOUBLE NOT NULL,
	actor VARCHAR(256) NOT NULL,
	change TEXT NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX ix_serving_events_model ON serving_events (model);

"""Alembic's environment for the serving database: migrations run on the connection
`onecommit.serving.database.migrate` hands over, in its transaction."""

from alembic import context

context.configure(connection=context.config.attributes["connection"],
                  # SQLite alters a table by copying it: batch mode does that.
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

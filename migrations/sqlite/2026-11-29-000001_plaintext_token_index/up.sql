-- Client tokens are stored as hashes (hex); a token still in plaintext (`ct_…`, written by
-- an older version) is hashed at start. This partial index holds only those rows, so the
-- check at every start reads nothing once they are hashed, however many sessions there are.
CREATE INDEX sessions_plaintext_client_token ON sessions (id) WHERE client_token LIKE 'ct_%';

-- 1: the request log and the feedback on it (the flywheel's input; see serve/reader.py)
CREATE TABLE requests (
    id                TEXT PRIMARY KEY,      -- the x-request-id header of the reply
    created           REAL NOT NULL,         -- unix time the request arrived
    endpoint          TEXT NOT NULL,         -- 'chat.completions' | 'completions'
    status            INTEGER NOT NULL,      -- HTTP status of the reply (200, 400, 429, ...)
    error             TEXT,                  -- the error message of a non-200 reply
    model             TEXT,                  -- the `model` the request named
    adapter           TEXT,                  -- the LoRA adapter that answered (NULL: the base/merged model)
    messages          TEXT,                  -- JSON: the chat messages as sent (chat.completions)
    prompt            TEXT,                  -- JSON: the prompt as sent (completions)
    system_prompt     TEXT,                  -- the trained system prompt added because the request had none
    params            TEXT,                  -- JSON: sampling and format parameters (max_tokens, temperature, response_format, ...)
    reply             TEXT,                  -- choice 0's text
    finish_reason     TEXT,                  -- choice 0: 'stop' | 'length' | 'cancelled' (client went away)
    choices           TEXT,                  -- JSON: every choice {index, text, finish_reason, completion_tokens, mean_logprob}
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,               -- all choices, stop tokens included
    latency_ms        REAL,                  -- arrival to last token
    mean_logprob      REAL                   -- choice 0: mean log-probability of its tokens under the model (uncertainty)
);
CREATE INDEX requests_created ON requests(created);
CREATE TABLE feedback (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL REFERENCES requests(id),
    created     REAL NOT NULL,
    rating      TEXT NOT NULL,               -- 'up' | 'down' | '1'..'5'
    score       REAL NOT NULL,               -- the rating on [0, 1]: up = 1, down = 0, k -> (k - 1) / 4
    correction  TEXT,                        -- the reply the user wanted instead
    comment     TEXT
);
CREATE INDEX feedback_request ON feedback(request_id);

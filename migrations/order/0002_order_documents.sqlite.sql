-- An order's lines and timeline move into its row, as JSON documents, so
-- that loading or saving an order is one statement:
--   lines:    [{"sku", "quantity", "name", "unit_price"}, ...] in line order
--   timeline: [{"event", "at", "detail"}, ...] oldest first
ALTER TABLE orders ADD COLUMN lines TEXT NOT NULL DEFAULT '[]';
ALTER TABLE orders ADD COLUMN timeline TEXT NOT NULL DEFAULT '[]';

UPDATE orders SET
    lines = COALESCE((
        SELECT json_group_array(json_object(
            'sku', sku, 'quantity', quantity, 'name', name, 'unit_price', unit_price)
            ORDER BY line_no)
        FROM order_lines WHERE order_lines.order_id = orders.id), '[]'),
    timeline = COALESCE((
        SELECT json_group_array(json_object('event', event, 'at', at, 'detail', detail)
            ORDER BY seq)
        FROM order_timeline WHERE order_timeline.order_id = orders.id), '[]');

DROP TABLE order_timeline;
DROP TABLE order_lines;

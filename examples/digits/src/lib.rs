//! A digits classifier served over HTTP: a Serve replica that loads an ONNX
//! model (trained by `train.py` on scikit-learn's 8x8 digits) once, and
//! runs it through `wasi:nn` for each request.
//!
//! `POST /digits` with `{"images": [[64 pixels, 0..16], ...]}` answers
//! `{"digits": [...]}`, one digit per image:
//!
//! ```text
//! fabric serve examples/digits/serve.toml --onnxruntime .../libonnxruntime.so.1.22.1
//! ```

use fabric::nn::{Model, Tensor};
use fabric::serve::{Request, Response};

/// Pixels in one image.
const PIXELS: usize = 64;
/// Images one request may carry.
const MAX_IMAGES: usize = 1024;

#[derive(serde::Deserialize)]
struct Images {
    images: Vec<Vec<f32>>,
}

#[derive(serde::Serialize)]
struct Digits {
    digits: Vec<i64>,
}

/// Run as a job (`fabric run`), it classifies the first of its test images.
#[fabric::main]
fn main() -> fabric::Result<()> {
    let classifier = Classifier::new();
    let zero = [
        0., 0., 5., 13., 9., 1., 0., 0., 0., 0., 13., 15., 10., 15., 5., 0., 0., 3., 15., 2., 0.,
        11., 8., 0., 0., 4., 12., 0., 0., 8., 8., 0., 0., 5., 8., 0., 0., 9., 8., 0., 0., 4., 11.,
        0., 1., 12., 7., 0., 0., 2., 14., 5., 10., 12., 0., 0., 0., 0., 6., 13., 10., 0., 0., 0.,
    ];
    match classifier.classify(&[zero.to_vec()]) {
        Ok(digits) => println!("an 8x8 zero is classified as {}", digits[0]),
        Err(why) => println!("cannot classify: {why}"),
    }
    Ok(())
}

#[fabric::actor]
struct Classifier {
    model: Model,
}

#[fabric::actor]
impl Classifier {
    fn new() -> Self {
        // The model is part of the component; it is loaded once per replica.
        let model = Model::onnx(include_bytes!("../model.onnx")).expect("load the digits model");
        Classifier { model }
    }

    fn call(&mut self, request: Request) -> Response {
        let images: Images = match request.json() {
            Ok(images) => images,
            Err(e) => return Response::text(400, e.to_string()),
        };
        match self.classify(&images.images) {
            Ok(digits) => Response::json(200, &Digits { digits }),
            Err(why) => Response::text(400, why),
        }
    }
}

impl Classifier {
    fn classify(&self, images: &[Vec<f32>]) -> Result<Vec<i64>, String> {
        if images.is_empty() || images.len() > MAX_IMAGES {
            return Err(format!("send 1 to {MAX_IMAGES} images"));
        }
        if let Some(bad) = images.iter().position(|i| i.len() != PIXELS) {
            return Err(format!("image {bad} does not have {PIXELS} pixels"));
        }
        let pixels: Vec<f32> = images.concat();
        let input = Tensor::f32(&[images.len() as u32, PIXELS as u32], &pixels);
        let outputs = self.model.run(&[("X", input)]).map_err(|e| e.to_string())?;
        outputs
            .get("label")
            .and_then(Tensor::to_i64)
            .ok_or_else(|| "the model gave no labels".to_string())
    }
}

//! The `canvas` interface of contract 0.2: images the host owns on a style's behalf.
//!
//! An [`Image`] lives in the calling instance's resource table (so it dies with the instance,
//! like everything else of one call). This module holds the resource's basic operations:
//! construction, size, reading and writing pixels, copies and dropping. The native image
//! operations (resize, blur, smoothing, posterise, palette, edges, adjust, blend, composite,
//! masks, noise) are implemented by the imaging crate on the `canvas` branch.

use wasmtime::component::Resource;

use super::bindings::v0_2::likeness::style::canvas::{BlendMode, Host, HostImage, Region, Rgba};
use super::bindings::v0_2::likeness::style::types::{Rect, Size};
use super::sandbox::Sandbox;

/// An 8-bit RGBA image (straight alpha), rows top to bottom, held by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub rgba: Vec<u8>,
}

impl Image {
    /// An image from its pixels; `None` when `rgba` is not `width * height * 4` bytes.
    pub fn new(width: u32, height: u32, rgba: Vec<u8>) -> Option<Image> {
        (rgba.len() as u128 == u128::from(width) * u128::from(height) * 4).then_some(Image {
            width,
            height,
            rgba,
        })
    }

    /// The byte range of row `y`'s pixels `x..x + width` (all inside the image).
    fn row_span(&self, x: u32, y: u32, width: u32) -> std::ops::Range<usize> {
        let start = (y as usize * self.width as usize + x as usize) * 4;
        start..start + width as usize * 4
    }

    /// Whether `region` lies inside the image.
    fn contains(&self, region: &Region) -> bool {
        u64::from(region.x) + u64::from(region.width) <= u64::from(self.width)
            && u64::from(region.y) + u64::from(region.height) <= u64::from(self.height)
    }

    /// The bytes of `region` (all of it when `None`), rows top to bottom.
    pub fn read(&self, region: Option<Region>) -> Result<Vec<u8>, String> {
        let Some(region) = region else {
            return Ok(self.rgba.clone());
        };
        if !self.contains(&region) {
            return Err(self.outside(&region));
        }
        let mut out = Vec::with_capacity(region.width as usize * region.height as usize * 4);
        for y in region.y..region.y + region.height {
            out.extend_from_slice(&self.rgba[self.row_span(region.x, y, region.width)]);
        }
        Ok(out)
    }

    /// Writes `rgba` (`region.width * region.height * 4` bytes) at `region`.
    pub fn write(&mut self, region: Region, rgba: &[u8]) -> Result<(), String> {
        if !self.contains(&region) {
            return Err(self.outside(&region));
        }
        let expected = region.width as usize * region.height as usize * 4;
        if rgba.len() != expected {
            return Err(format!(
                "{} bytes were given for a {}x{} region (expected {expected})",
                rgba.len(),
                region.width,
                region.height
            ));
        }
        let row = region.width as usize * 4;
        for (i, y) in (region.y..region.y + region.height).enumerate() {
            let span = self.row_span(region.x, y, region.width);
            self.rgba[span].copy_from_slice(&rgba[i * row..(i + 1) * row]);
        }
        Ok(())
    }

    fn outside(&self, region: &Region) -> String {
        format!(
            "the region {}x{} at ({}, {}) is outside the {}x{} image",
            region.width, region.height, region.x, region.y, self.width, self.height
        )
    }
}

/// A trap for a host call on a handle that is not a live image of this instance.
fn stale(error: wasmtime::component::ResourceTableError) -> wasmtime::Error {
    wasmtime::Error::msg(format!("canvas: not a live image handle ({error})"))
}

impl Sandbox {
    fn image(&self, handle: &Resource<Image>) -> wasmtime::Result<&Image> {
        self.table().get(handle).map_err(stale)
    }

    /// Puts `image` into the instance's table, for the guest.
    pub(crate) fn add_image(&mut self, image: Image) -> wasmtime::Result<Resource<Image>> {
        self.table_mut()
            .push(image)
            .map_err(|e| wasmtime::Error::msg(format!("canvas: {e}")))
    }

    /// Takes the image a guest returned out of the instance's table.
    pub(crate) fn take_image(&mut self, handle: Resource<Image>) -> wasmtime::Result<Image> {
        self.table_mut().delete(handle).map_err(stale)
    }
}

/// Until the imaging crate lands: the call traps, naming the operation.
fn not_yet(operation: &str) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "canvas.image.{operation} is not implemented by this host yet"
    ))
}

impl HostImage for Sandbox {
    fn new(&mut self, width: u32, height: u32, rgba: Vec<u8>) -> wasmtime::Result<Resource<Image>> {
        let len = rgba.len();
        let image = Image::new(width, height, rgba).ok_or_else(|| {
            wasmtime::Error::msg(format!(
                "canvas: {len} bytes do not make a {width}x{height} RGBA image"
            ))
        })?;
        self.add_image(image)
    }

    fn filled(
        &mut self,
        width: u32,
        height: u32,
        colour: Rgba,
    ) -> wasmtime::Result<Resource<Image>> {
        let pixels = usize::try_from(u64::from(width) * u64::from(height))?;
        let rgba = [colour.r, colour.g, colour.b, colour.a].repeat(pixels);
        self.add_image(Image {
            width,
            height,
            rgba,
        })
    }

    fn noise(
        &mut self,
        _width: u32,
        _height: u32,
        _scale: f32,
        _seed: u64,
    ) -> wasmtime::Result<Resource<Image>> {
        Err(not_yet("noise"))
    }

    fn width(&mut self, image: Resource<Image>) -> wasmtime::Result<u32> {
        Ok(self.image(&image)?.width)
    }

    fn height(&mut self, image: Resource<Image>) -> wasmtime::Result<u32> {
        Ok(self.image(&image)?.height)
    }

    fn duplicate(&mut self, image: Resource<Image>) -> wasmtime::Result<Resource<Image>> {
        let copy = self.image(&image)?.clone();
        self.add_image(copy)
    }

    fn read(
        &mut self,
        image: Resource<Image>,
        region: Option<Region>,
    ) -> wasmtime::Result<Vec<u8>> {
        self.image(&image)?
            .read(region)
            .map_err(|e| wasmtime::Error::msg(format!("canvas.image.read: {e}")))
    }

    fn write(
        &mut self,
        image: Resource<Image>,
        region: Region,
        rgba: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let image = self.table_mut().get_mut(&image).map_err(stale)?;
        Ok(image.write(region, &rgba))
    }

    fn resize(
        &mut self,
        _image: Resource<Image>,
        _size: Size,
        _nearest: bool,
    ) -> wasmtime::Result<Resource<Image>> {
        Err(not_yet("resize"))
    }

    fn blur(&mut self, _image: Resource<Image>, _sigma: f32) -> wasmtime::Result<Resource<Image>> {
        Err(not_yet("blur"))
    }

    fn smooth(
        &mut self,
        _image: Resource<Image>,
        _radius: u32,
        _epsilon: f32,
    ) -> wasmtime::Result<Resource<Image>> {
        Err(not_yet("smooth"))
    }

    fn posterize(
        &mut self,
        _image: Resource<Image>,
        _levels: u32,
    ) -> wasmtime::Result<Resource<Image>> {
        Err(not_yet("posterize"))
    }

    fn quantize(
        &mut self,
        _image: Resource<Image>,
        _palette: Vec<Rgba>,
        _dither: bool,
    ) -> wasmtime::Result<Resource<Image>> {
        Err(not_yet("quantize"))
    }

    fn palette(&mut self, _image: Resource<Image>, _count: u32) -> wasmtime::Result<Vec<Rgba>> {
        Err(not_yet("palette"))
    }

    fn edges(&mut self, _image: Resource<Image>, _sigma: f32) -> wasmtime::Result<Resource<Image>> {
        Err(not_yet("edges"))
    }

    fn adjust(
        &mut self,
        _image: Resource<Image>,
        _brightness: f32,
        _contrast: f32,
        _saturation: f32,
    ) -> wasmtime::Result<Resource<Image>> {
        Err(not_yet("adjust"))
    }

    fn blend(
        &mut self,
        _image: Resource<Image>,
        _top: Resource<Image>,
        _mode: BlendMode,
        _opacity: f32,
    ) -> wasmtime::Result<Result<Resource<Image>, String>> {
        Err(not_yet("blend"))
    }

    fn composite(
        &mut self,
        _image: Resource<Image>,
        _top: Resource<Image>,
        _mask: Resource<Image>,
    ) -> wasmtime::Result<Result<Resource<Image>, String>> {
        Err(not_yet("composite"))
    }

    fn ellipse_mask(
        &mut self,
        _image: Resource<Image>,
        _bbox: Rect,
        _feather: f32,
    ) -> wasmtime::Result<Resource<Image>> {
        Err(not_yet("ellipse-mask"))
    }

    fn drop(&mut self, image: Resource<Image>) -> wasmtime::Result<()> {
        self.table_mut().delete(image).map_err(stale)?;
        Ok(())
    }
}

impl Host for Sandbox {}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(x: u32, y: u32, width: u32, height: u32) -> Region {
        Region {
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn regions_read_and_write_rows() {
        let mut image = Image::new(3, 2, (0..24).collect()).unwrap();
        assert_eq!(
            image.read(Some(region(1, 1, 2, 1))).unwrap(),
            (16..24).collect::<Vec<u8>>()
        );
        image.write(region(0, 0, 1, 2), &[9; 8]).unwrap();
        assert_eq!(&image.rgba[..4], &[9; 4]);
        assert_eq!(&image.rgba[12..16], &[9; 4]);
        assert_eq!(&image.rgba[4..8], &[4, 5, 6, 7]);
    }

    #[test]
    fn bad_regions_and_sizes_are_refused() {
        assert!(Image::new(2, 2, vec![0; 15]).is_none());
        assert!(Image::new(u32::MAX, u32::MAX, Vec::new()).is_none());
        let mut image = Image::new(2, 2, vec![0; 16]).unwrap();
        assert!(
            image
                .read(Some(region(1, 1, 2, 1)))
                .unwrap_err()
                .contains("outside")
        );
        assert!(image.read(Some(region(u32::MAX, 0, 2, 1))).is_err());
        assert!(
            image
                .write(region(0, 0, 2, 2), &[0; 15])
                .unwrap_err()
                .contains("15 bytes")
        );
    }
}
